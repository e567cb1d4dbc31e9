"""Test rate and distortion of every trained run of a rate-distortion sweep
(``gvae sweep examples/rate_distortion_sweep.toml``): writes ``rd.json``, ``rd.md`` and ``rd.png``.

    python examples/rate_distortion.py runs/rd --out docs/results

For each run, on the fixed binarised test set (the one ``gvae train`` reports on), R = mean KL(q(z|x) || p(z))
in closed form and D = -mean E_q log p(x|z) with 10 posterior samples per image
(:func:`gvae.evaluation.analysis.rate_distortion`); -ELBO = R + D. The table gives, per family and target
setting (the sweep's grid values other than the family: beta or the target rate), the mean and sample
standard deviation over seeds; the picture draws D against R for each family
with the line R + D = the best run's -ELBO (Alemi et al., "Fixing a Broken ELBO": every model lies on or
above the line of the best ELBO, and the ELBO alone cannot tell the points of that line apart).
Runs not yet trained are listed as missing, never dropped silently.
"""
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from gvae.io.arguments import ArgumentParser
from gvae.io.files import atomic_path, write_json
from gvae.io.mnist import load_mnist
from gvae.kernels import generator
from gvae.sweep import state
from gvae.evaluation.analysis import rate_distortion
from gvae.training.batching import EVAL_SEED, fixed_eval_sets
from gvae.training.runs import load_model

SAMPLES = 10  # posterior samples per test image for D


def measure(run, data):
    """{R, D, neg_elbo} of a trained run on the test set, or None while it has no summary."""
    if not (run.folder / "summary.json").is_file():
        return None
    model, params, _ = load_model(run.folder)
    _, test = fixed_eval_sets(data, model)
    rates, distortion = rate_distortion(model, params, test, generator("cpu", EVAL_SEED), SAMPLES)
    R, D = float(np.sum(rates, axis=0).mean()), float(distortion.mean())
    return {"R": R, "D": D, "neg_elbo": R + D}


def _stat(values):
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def _cell(mean, std):
    return "-" if mean is None else f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}")


def summarise(points):
    """Rows per (family, target): means and standard deviations of R, D and -ELBO over seeds."""
    groups = defaultdict(list)
    for p in points:
        groups[(p["family"], p["setting"])].append(p)
    rows = []
    for (family, setting), ps in sorted(groups.items()):
        done = [p for p in ps if p["R"] is not None]
        row = {"family": family, "setting": setting, "seeds": len(done), "missing": len(ps) - len(done)}
        for key in ("R", "D", "neg_elbo"):
            row[key], row[key + "_std"] = _stat([p[key] for p in done])
        rows.append(row)
    return rows


def markdown(rows):
    lines = ["| family | setting | R (nats) | D (nats) | -ELBO = R + D | seeds |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        seeds = str(r["seeds"]) + (f" ({r['missing']} missing)" if r["missing"] else "")
        lines.append(f"| {r['family']} | {r['setting']} | {_cell(r['R'], r['R_std'])} | "
                     f"{_cell(r['D'], r['D_std'])} | {_cell(r['neg_elbo'], r['neg_elbo_std'])} | {seeds} |")
    return "\n".join(lines) + "\n"


def picture(points, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    done = [p for p in points if p["R"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    for family, marker in zip(sorted({p["family"] for p in done}), "osD^v"):
        ps = [p for p in done if p["family"] == family]
        ax.plot([p["R"] for p in ps], [p["D"] for p in ps], marker=marker, linestyle="none", alpha=0.8,
                label=family)
        means = sorted(summarise(ps), key=lambda m: m["R"])  # the curve through the settings' means
        ax.plot([m["R"] for m in means], [m["D"] for m in means], color=ax.lines[-1].get_color(), lw=1)
    best = min(done, key=lambda p: p["neg_elbo"])
    r = np.linspace(0, max(p["R"] for p in done) * 1.05, 50)
    where = ", ".join(filter(None, (best["family"], best["setting"])))  # a configuration's setting may be empty
    ax.plot(r, best["neg_elbo"] - r, "k--", lw=1, label=f"R + D = {best['neg_elbo']:.1f} (best -ELBO: {where})")
    ax.set_xlabel("rate R = KL(q(z|x) || p(z)), nats")
    ax.set_ylabel("distortion D = -E log p(x|z), nats")
    ax.set_title("Rate and distortion on the MNIST test set", fontsize=11)
    ax.set_ylim(bottom=max(0.0, min(p["D"] for p in done) - 10))
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path, help="the sweep folder gvae sweep wrote")
    p.add_argument("--out", type=Path, default=None, help="folder for rd.json, rd.md, rd.png (default: the sweep's)")
    args = p.parse_args(argv)
    try:
        sweep = state.spec_of(args.sweep)
    except ValueError as e:
        raise SystemExit(f"rate_distortion.py: {e}")
    out = args.out or args.sweep
    out.mkdir(parents=True, exist_ok=True)
    data = load_mnist(sweep.data)
    points = []
    for run in sweep.runs:
        m = measure(run, data) or {"R": None, "D": None, "neg_elbo": None}
        setting = ", ".join(f"{k} {v:g}" for k, v in sorted(sweep.configs[run.name].items()) if k != "posterior")
        points.append({"run": run.id, "family": run.config.posterior, "setting": setting, "seed": run.seed, **m})
        state_word = "missing" if m["R"] is None else f"R {m['R']:.2f}  D {m['D']:.2f}"
        print(f"{run.id}: {state_word}", flush=True)
    rows = summarise(points)
    write_json(out / "rd.json", {"points": points, "rows": rows,
                                 "complete": all(p["R"] is not None for p in points), "samples": SAMPLES})
    with atomic_path(out / "rd.md") as tmp:
        Path(tmp).write_text(markdown(rows))
    if any(p["R"] is not None for p in points):
        picture(points, out / "rd.png")
    print(markdown(rows))
    return 0 if all(math.isfinite(p["R"]) for p in points if p["R"] is not None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
