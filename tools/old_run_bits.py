"""This CPU's bits of the kept old runs resumed by the code that wrote them (tests/test_old_runs.py).

    python tools/old_run_bits.py [--write]

It needs a clone with its history (git). A checkout of commit ff47217 (a ``git
worktree`` in a temporary folder, removed afterwards) resumes each run of tests/data/old_runs for its
second epoch, as it would have trained it, and the SHA-256 of every array of each resulting checkpoint
is printed as JSON under this CPU's key (``VENDOR family F model M``). ``--write`` adds them to
tests/data/old_runs/expected.json (refused where that CPU's bits are there already and differ). Where a
CPU's key is in expected.json, the test resumes the same runs with today's code and demands these bits;
elsewhere it compares the metrics only. ff47217's Numba kernels compile into the worktree first (1-3
minutes on 2 cores). The resumed runs' metrics are checked first: they must agree with expected.json's to
1e-9 of each row's largest (the test's tolerance), else nothing is printed or written.
"""
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WRITER = "ff47217"
ROOT = Path(__file__).resolve().parent.parent
OLD = ROOT / "tests" / "data" / "old_runs"

# Run with the old checkout on PYTHONPATH: resume each run of OLD into SCRATCH for its second epoch.
RESUME = r"""
import shutil, sys
from pathlib import Path
from gvae.cli import main
old, scratch = Path(sys.argv[1]), Path(sys.argv[2])
for name in sorted(p.name for p in old.iterdir() if p.is_dir()):
    shutil.copytree(old / name, scratch / name)
    if main(["train", "--resume", "--out", str(scratch / name), "--data", str(old / "data.npz"), "--epochs", "2",
             "--quiet"]) != 0:
        sys.exit(f"the old code could not resume {name}")
"""


def this_cpu():
    """'VENDOR family F model M' of this machine's first CPU (expected.json's keys), or None off Linux."""
    if platform.system() != "Linux":
        return None
    fields = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if not line.strip():
            break  # the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    if not {"vendor_id", "cpu family", "model"} <= set(fields):
        return None
    return f"{fields['vendor_id']} family {fields['cpu family']} model {fields['model']}"


def resumed_by_the_writer():
    """{"bits": {run: {array: sha256}}, "metrics": {run: rows}} of the old runs resumed by WRITER's code."""
    with tempfile.TemporaryDirectory() as tmp:
        tree, scratch = Path(tmp) / "tree", Path(tmp) / "runs"
        scratch.mkdir()
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), WRITER], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        try:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            subprocess.run([sys.executable, "-c", RESUME, str(OLD), str(scratch)], env=env, cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], check=True, cwd=ROOT)
        runs = sorted(p for p in scratch.iterdir() if p.is_dir())
        return {"bits": {run.name: checkpoint_bits(run / "checkpoint.npz") for run in runs},
                "metrics": {run.name: read_metrics(run / "metrics.jsonl") for run in runs}}


def checkpoint_bits(path):
    """{array: SHA-256 of its bytes} of the checkpoint file ``path`` (its metadata left out)."""
    with np.load(path) as z:
        return {k: hashlib.sha256(np.ascontiguousarray(z[k]).tobytes()).hexdigest()
                for k in sorted(z.files) if k != "meta_json"}


def read_metrics(path):
    """The rows of a run's metrics.jsonl."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def rows(metrics):
    """A run's metrics rows less what may differ between two runs of the same state (the timings and how
    the run was resumed)."""
    return [{k: v for k, v in r.items() if not k.startswith("seconds") and k != "resumed_with"} for r in metrics]


def disagreement(got, want):
    """None where the metrics rows ``got`` agree with ``want``: the same rows with the same keys, each float
    within 1e-9 of its expected row's largest (float32 sums whose order a kernel or a CPU may change),
    every other value equal; else the first difference, said."""
    if [sorted(r) for r in got] != [sorted(r) for r in want]:
        return f"the rows' keys differ: {[sorted(r) for r in got]} against {[sorted(r) for r in want]}"
    for got_row, want_row in zip(got, want):
        scale = max(abs(v) for v in want_row.values() if isinstance(v, float))
        for k, v in want_row.items():
            far = abs(got_row[k] - v) > 1e-9 * scale if isinstance(v, float) else got_row[k] != v
            if far:
                return f"epoch {want_row.get('epoch')}'s {k}: {got_row[k]!r} against {v!r}"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="add this CPU's bits to expected.json")
    args = parser.parse_args(argv)
    cpu = this_cpu()
    if cpu is None:
        sys.exit("old_run_bits: this CPU has no name in /proc/cpuinfo's form (Linux only)")
    path = OLD / "expected.json"
    expected = json.loads(path.read_text())
    resumed = resumed_by_the_writer()
    bad = {name: disagreement(rows(resumed["metrics"][name]), expected[name]["metrics"]) for name in expected}
    bad = {name: why for name, why in bad.items() if why}
    if bad:
        sys.exit(f"old_run_bits: {WRITER}'s metrics here are not expected.json's: {bad}")
    print(json.dumps({cpu: resumed["bits"]}, indent=1))
    if args.write:
        clash = [name for name in expected if expected[name]["checkpoint_sha256"].get(cpu, resumed["bits"][name])
                 != resumed["bits"][name]]
        if clash:
            sys.exit(f"old_run_bits: expected.json holds other bits for {cpu} ({clash}): not replaced")
        for name in expected:
            expected[name]["checkpoint_sha256"][cpu] = resumed["bits"][name]
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(expected, indent=1) + "\n")
        os.replace(tmp, path)
        print(f"old_run_bits: {cpu}'s bits written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
