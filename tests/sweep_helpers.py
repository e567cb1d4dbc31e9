"""What the sweep tests share: a small spec, writing and editing it, and run folders made in-process
(trained, or faked as the table reads them), and waiting on subprocesses."""
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gvae.io.files import write_json, write_jsonl
from gvae.sweep import state
from gvae.sweep.execute import plan
from gvae.sweep.spec import load_spec
from gvae.training import Trainer, rundir
from tests.helpers import make_data

REPO = Path(__file__).resolve().parents[1]

SPEC = """
[sweep]
out = "sweep"
seeds = [0, 1]
data = "tiny.npz"

[base]
latent = 4
hidden = [16]
activation = "tanh"
epochs = 2
batch_size = 50

[grid]
posterior = ["diagonal", "chain"]

[eval]
iw_samples = 10
limit = 50
"""


def write_spec(folder, text=SPEC, name="spec.toml"):
    path = Path(folder) / name
    path.write_text(text)
    return path


def edit(text, old, new):
    assert old in text, old
    return text.replace(old, new)


def fit(run, epochs=None):
    """Train ``run`` in-process (on small generated data) for ``epochs`` (default: its own)."""
    config = run.config if epochs is None else dataclasses.replace(run.config, epochs=epochs)
    Trainer(config, make_data(n=100, d=36), run.folder, quiet=True).fit()


def compile_for(spec, folder):
    """Train each run of the spec file ``spec`` for one epoch into ``folder`` (not the runs' own folders), by
    the commands a sweep's tasks give and one process of the kind that runs them, so that every kernel
    they use is in Numba's cache before a sweep starts them. A run that is compiling answers Ctrl-C only
    when the compilation ends (llvmlite's callbacks swallow the KeyboardInterrupt raised in them): with a
    cold cache on a loaded machine that took 15 s and more, past the 10 s a stopping sweep waits for its
    runs, and a test of stopping would time the compiler."""
    commands = []
    for job in plan(load_spec(spec, out=Path(folder)))[0]:
        args = list(job.train)
        args[args.index("--epochs") + 1] = "1"
        commands.append(args)
    child = subprocess.run([sys.executable, "-m", "gvae.sweep_child", str(os.getpid()), json.dumps(commands)],
                           capture_output=True, text=True, env=environment(), timeout=900)
    assert child.returncode == 0, child.stderr


def fake_evaluation(run, settings, **result):
    write_json(run.folder / "eval.json", {"test_elbo": -1.0, "test_log_likelihood": -0.5, "iw_samples": 10,
                                          "n_test": 50, "seconds": 1.0, **result})
    state.record_evaluation(run.folder, settings)


def fake_run(run, seconds, result=None, settings=None, valid=None):
    """A run folder as the table reads it: ``seconds`` per epoch trained (with validation ELBOs ``valid``
    and a rate that halves each epoch), and an evaluation if ``result``."""
    run.folder.mkdir(parents=True)
    (run.folder / "checkpoint.npz").write_bytes(b"")
    write_json(run.folder / "config.json", run.config.flat())
    write_jsonl(run.folder / "metrics.jsonl", [{"epoch": i + 1, "seconds": s, "seconds_with_eval": s + 0.5,
                                                **({} if valid is None else {"valid_elbo": valid[i], "lr": 0.5 ** i})}
                                               for i, s in enumerate(seconds)])
    if len(seconds) == run.config.epochs:
        write_json(run.folder / "summary.json", {"epochs": len(seconds), "stopped_early": False, "best_epoch": 1})
    if result is not None:
        fake_evaluation(run, settings, **result)


def wait_for(condition, timeout, what):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def lock_is_free(folder):
    try:
        with rundir.folder_lock(folder):
            return True
    except rundir.RunFolderError:
        return False


def environment():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
