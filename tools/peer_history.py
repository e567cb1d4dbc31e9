"""The step's ratio to its peers over the commits that asv recorded it for, drawn from asv's result files.

``bench_peers.StepRatio`` (asv_bench/benchmarks/bench_peers.py) records gvae's training step over JAX's and
PyTorch's, per objective and thread count. ``asv publish`` draws a benchmark only once
``results/benchmarks.json`` lists it, which waits for its history (tests/test_bench_history.py); this draws
the recorded points meanwhile, one panel per peer, commits in the order of their dates::

    python tools/peer_history.py MACHINE OUT.png     # MACHINE: a folder of asv_bench/results/

Needs matplotlib (the ``plot`` extra) and git (each commit's date).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = {"track_vs_jax": "JAX", "track_vs_torch": "PyTorch"}
NAME = "bench_peers.StepRatio."


def points(folder):
    """[(commit date, short hash, {peer: {(objective, threads): ratio}})] of the asv result files in
    ``folder`` (one machine's) that hold StepRatio, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"no asv results at {folder}: give a machine's folder name in asv_bench/results/")
    rows = []
    for path in sorted(folder.glob("*.json")):
        if path.name == "machine.json":
            continue
        record = json.loads(path.read_text())
        results = record.get("results", {})
        found = {}
        for key, peer in PEERS.items():
            entry = results.get(NAME + key)
            if not entry or entry[0] is None:
                continue
            values, (objectives, thread_counts) = entry[0], entry[1]
            pairs = [(o.strip("'"), int(t)) for o in objectives for t in thread_counts]
            found[peer] = {pair: v for pair, v in zip(pairs, values) if v is not None}
        if found:
            commit = record["commit_hash"]
            date = int(subprocess.run(["git", "show", "-s", "--format=%ct", commit], cwd=ROOT, check=True,
                                      capture_output=True, text=True).stdout.strip())
            rows.append((date, commit[:7], found))
    if not rows:
        raise SystemExit(f"no {NAME}* results in {folder}; record them with asv run --bench bench_peers")
    return sorted(rows, key=lambda row: row[:2])  # by date, then hash (never by the dicts)


def draw(rows, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(PEERS), figsize=(11, 4), sharey=True)
    labels = [commit for _, commit, _ in rows]
    for ax, peer in zip(axes, PEERS.values()):
        series = sorted({pair for _, _, found in rows for pair in found.get(peer, {})})
        for objective, threads in series:
            ys = [found.get(peer, {}).get((objective, threads)) for _, _, found in rows]
            xs = [i for i, y in enumerate(ys) if y is not None]
            ax.plot(xs, [ys[i] for i in xs], marker="o", label=f"{objective}, {threads} thread(s)")
        if peer == "JAX":
            ax.axhline(0.85, color="grey", lw=0.8, ls="--")  # issue 84's target
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"gvae step / {peer} step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("time ratio (below 1: gvae faster)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("machine", help="the machine's folder name in asv_bench/results/")
    parser.add_argument("out", help="the PNG to write")
    args = parser.parse_args(argv)
    rows = points(ROOT / "asv_bench" / "results" / args.machine)
    draw(rows, args.out, f"bench_peers.StepRatio on {args.machine} (dashed: 0.85x JAX, the target)")
    print(f"{len(rows)} commits drawn into {args.out}")


if __name__ == "__main__":
    sys.exit(main())
