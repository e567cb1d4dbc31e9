"""Learning curves: a run's train and validation ELBO per epoch (``curves.png`` of ``gvae plot``), and the
validation ELBO of every run of a sweep (``curves.png`` of ``gvae table``, docs/howto/sweeps.md)."""
from pathlib import Path

import numpy as np

from ..io.files import read_json, read_jsonl
from . import canvas
from .titles import run_title, titled, wrap


def _read_json(path):
    """The JSON file at ``path``, or None when there is none."""
    path = Path(path)
    return read_json(path) if path.exists() else None


def plot_curves(run_dir, path=None):
    """``curves.png``: train and validation ELBO per epoch from ``run_dir/metrics.jsonl`` (default path:
    the run folder's ``curves.png``).

    The best validation epoch (from ``summary.json`` if there is one) is marked. Returns the path."""
    run_dir = Path(run_dir)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    if not rows:
        raise ValueError(f"{run_dir / 'metrics.jsonl'} holds no epochs to plot")
    config = _read_json(run_dir / "config.json")
    summary = _read_json(run_dir / "summary.json")
    epochs = [r["epoch"] for r in rows]
    fig = canvas.new_figure(6.4, 4.8, layout="constrained")
    ax = fig.add_subplot()
    ms = canvas.marker_size(len(rows))
    ax.plot(epochs, [r["train_elbo"] for r in rows], "o-", ms=ms, label="train ELBO (epoch average)")
    if any(abs(r.get("train_bound", r["train_elbo"]) - r["train_elbo"]) > 0.01 for r in rows):
        ax.plot(epochs, [r["train_bound"] for r in rows], "o--", ms=ms, label="train bound (optimised)")
    ax.plot(epochs, [r["valid_elbo"] for r in rows], "s-", ms=ms, label="validation ELBO")
    best = summary.get("best_epoch") if summary else None
    if best is None:
        best = max(rows, key=lambda r: r["valid_elbo"])["epoch"]
    best_row = next((r for r in rows if r["epoch"] == best), None)
    if best_row is not None:  # a star behind the validation point, which stays visible on it
        ax.plot([best], [best_row["valid_elbo"]], "*", ms=16, color="C3", zorder=1.9,
                label=f"best validation (epoch {best}: {best_row['valid_elbo']:.2f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per image)")
    canvas.integer_axis(ax, min(epochs), max(epochs))
    # The first epoch starts from the untrained model, often hundreds of nats below the rest: scale the
    # axis to the later epochs and say where the first one went, rather than flatten every later change.
    later = [v for r in rows[1:] for v in (r["train_elbo"], r["valid_elbo"]) if v is not None and np.isfinite(v)]
    first = [v for v in (rows[0]["train_elbo"], rows[0]["valid_elbo"]) if v is not None and np.isfinite(v)]
    if len(rows) >= 3 and later and first:
        lo, hi = min(later), max(later)
        pad = 0.15 * (hi - lo) or 1.0
        if min(first) < lo - 3 * (hi - lo + pad):
            ax.set_ylim(lo - pad, hi + pad)
            ax.annotate(f"epoch 1 below the axis ({min(first):.1f})", xy=(epochs[0], lo - pad), xytext=(0, 8),
                        textcoords="offset points", fontsize=8, color="0.3")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=9)  # below the axes, never on a curve
    ax.set_title(wrap(titled("Learning curves", run_title(config, run_dir)), 6.4, 11), fontsize=11)
    return canvas.save(fig, path if path is not None else run_dir / "curves.png")


def plot_sweep_curves(curves, path, title):
    """``curves.png`` of a sweep: the validation ELBO per epoch of every run, one colour per configuration
    and one line style per seed (the legend, right of the panels, names each once). From 10 epochs on, a
    right panel enlarges the last half of the epochs, where runs that differ by a nat are told apart, and
    the left one is scaled to the epochs from the fifth (the untrained model starts far below). A dotted
    vertical line marks each epoch where the learning rate of the first run changed. Few epochs are drawn
    with markers, so a run with one epoch shows its point. ``curves``: {configuration: [(seed, epochs,
    valid_elbo, lr)]}. Returns path."""
    from matplotlib.lines import Line2D

    runs = [(name, seed, np.asarray(e), np.asarray(v, dtype=np.float64), lr)
            for name, seeds in curves.items() for seed, e, v, lr in seeds if len(e)]
    if not runs:
        raise ValueError("no run of the sweep has a finished epoch to plot")
    first = min(int(e[0]) for _, _, e, _, _ in runs)
    last = max(int(e[-1]) for _, _, e, _, _ in runs)
    zoom = last >= 10
    fig = canvas.new_figure(13.0 if zoom else 8.5, 4.8, layout="constrained")
    panels = fig.subplots(1, 2 if zoom else 1, squeeze=False)[0]
    start = max(first, last // 2)
    spans = [(first, min(5, last) if zoom else first, "all epochs")]  # (first shown, first scaled, title)
    if zoom:
        spans.append((start, start, f"epochs {start}-{last}"))
    colours = {name: f"C{i % 10}" for i, name in enumerate(curves)}
    seeds = sorted({seed for _, seed, *_ in runs})
    styles = {seed: ("-", "--", ":", "-.")[i % 4] for i, seed in enumerate(seeds)}
    _, _, e0, _, lr0 = runs[0]
    changes = [int(e0[i]) for i in range(1, len(e0)) if lr0[i] != lr0[i - 1]]
    for ax, (lo, scaled, name) in zip(panels, spans):
        for config, seed, e, v, _ in runs:
            keep = e >= lo
            ax.plot(e[keep], v[keep], styles[seed], color=colours[config], lw=1.2, marker="o",
                    ms=canvas.marker_size(last - lo + 1, most=12))  # many runs: markers only for a few epochs
        for c in changes:
            if c >= lo:
                ax.axvline(c, color="0.6", lw=0.8, ls=":")
        canvas.integer_axis(ax, lo, last)
        # Scaled to the values from epoch ``scaled`` on: the untrained model's first epochs are far below.
        shown = np.concatenate([v[e >= scaled] for _, _, e, v, _ in runs])
        shown = shown[np.isfinite(shown)]
        if shown.size:
            pad = 0.08 * (shown.max() - shown.min()) or 0.5
            ax.set_ylim(shown.min() - pad, shown.max() + pad)
        ax.set_xlabel("epoch")
        ax.set_title(name + (" (dotted: learning-rate changes)" if any(c >= lo for c in changes) else ""),
                     fontsize=10)
        ax.grid(alpha=0.3)
    panels[0].set_ylabel("validation ELBO (nats per image)")
    handles = [Line2D([], [], color=colours[name], lw=2, label=name) for name in curves
               if any(run[0] == name for run in runs)]
    if len(seeds) > 1:
        handles += [Line2D([], [], color="0.3", ls=styles[seed], lw=1.2, label=f"seed {seed}") for seed in seeds]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle(wrap(title, 13.0 if zoom else 8.5, 11), fontsize=11)
    return canvas.save(fig, path)
