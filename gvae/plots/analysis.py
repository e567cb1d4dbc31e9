"""The pictures of ``gvae analyze``, drawn from its ``analysis.json`` dict (docs/howto/analysis.md): ``gaps.png``
(the inference gaps of Cremer et al. and the ELBO surgery beside them), ``surgery.png`` (a hierarchy, which
has no gaps: the ELBO surgery of each layer that has one) and ``unit_activity.png`` (the activity of each
latent unit)."""
from pathlib import Path

import numpy as np

from . import canvas
from .titles import run_title, titled, wrap


def analysis_title(result):
    """The second title line of the analysis pictures: the run and its model, from ``analysis.json``."""
    return run_title({k: result[k] for k in ("posterior", "likelihood", "latent", "hidden") if k in result},
                     result.get("run"))


def _surgeries(result):
    """The layers of an ``analysis.json`` dict that have an ELBO surgery."""
    return [layer for layer in result["layers"] if layer.get("surgery")]


def _layer_name(layer, n_layers):
    """An ``analysis.json`` layer's name as the docs write it: z for a model's one stochastic layer, else
    z1, z2, ... from the bottom (the file's ``layer`` counts from 0)."""
    return "z" if n_layers == 1 else f"z{layer['layer'] + 1}"


def _draw_surgery(ax, layer, n_layers):
    """One stacked bar of a layer's ELBO surgery (of a model with ``n_layers`` stochastic layers): its mean
    KL term split into the mutual information (with its bound log N dashed) and the marginal KL, bars of
    one standard error."""
    s = layer["surgery"]
    mutual, marginal = s["mutual_information"], s["marginal_kl"]
    ax.bar([0], [mutual], 0.6, yerr=s["mutual_information_sem"], capsize=4, color="C2",
           label=f"mutual information I(n, z) {mutual:.2f}")
    ax.bar([0], [marginal], 0.6, bottom=[mutual], yerr=s["marginal_kl_sem"], capsize=4, color="C4",
           label=f"marginal KL(q(z) || p(z)) {marginal:.2f}")
    ax.axhline(s["log_n"], color="C2", lw=1, ls="--", label=f"log N = {s['log_n']:.2f}")
    name = f"{_layer_name(layer, n_layers)} ({layer['posterior']})" if n_layers > 1 else layer["posterior"]
    ax.set_xticks([0], [name])
    ax.set_xlim(-0.8, 0.8)
    top = max(mutual + marginal + (s["marginal_kl_sem"] or 0.0), s["log_n"], 1e-3)
    ax.set_ylim(min(0.0, mutual, mutual + marginal) * 1.1, top * 1.45)  # room for the legend
    ax.set_ylabel("nats per image")
    ax.set_title(f"ELBO surgery: mean KL {s['mean_kl']:.2f}, {s['n_points']} points", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)


def plot_gaps(result, path):
    """``gaps.png`` from an ``analysis.json`` dict: the inference gap split into the approximation and the
    amortisation gap (means over the points, bars of one standard error), each point's two gaps, the
    refinement's mean held-out ELBO per check and, where the layer has one, its ELBO surgery. Returns the
    path."""
    gaps = result["gaps"]
    surgeries = _surgeries(result)
    fig = canvas.new_figure(13.0 + 3.5 * len(surgeries), 4.4, layout="constrained")
    bars, points, trace, *more = fig.subplots(1, 3 + len(surgeries),
                                              width_ratios=[0.8, 1.0, 1.2] + [0.9] * len(surgeries))
    for ax, layer in zip(more, surgeries):
        _draw_surgery(ax, layer, len(result["layers"]))
    approx, amort = gaps["approximation_gap"], gaps["amortisation_gap"]
    bars.bar([0], [approx], 0.6, yerr=gaps["approximation_gap_sem"], capsize=4, color="C0",
             label=f"approximation gap {approx:.2f}")
    bars.bar([0], [amort], 0.6, bottom=[approx], yerr=gaps["amortisation_gap_sem"], capsize=4, color="C1",
             label=f"amortisation gap {amort:.2f}")
    family = result.get("posterior", "?")  # a hierarchy's: one name per layer, bottom first
    bars.set_xticks([0], ["+".join(family) if isinstance(family, (list, tuple)) else family])
    bars.set_xlim(-0.8, 0.8)
    top = approx + amort + (gaps["amortisation_gap_sem"] or 0.0)
    bars.set_ylim(min(0.0, approx, approx + amort) * 1.1, max(top, approx, 1e-3) * 1.45)  # room for the legend
    bars.set_ylabel("nats per image")
    bars.set_title(f"inference gap {gaps['inference_gap']:.2f}", fontsize=10)
    bars.legend(fontsize=8, loc="upper left")
    bars.grid(axis="y", alpha=0.3)
    per = gaps["per_point"]
    points.scatter(per["approximation_gap"], per["amortisation_gap"], s=12, alpha=0.7)
    points.axhline(0.0, color="0.6", lw=0.8)
    points.axvline(0.0, color="0.6", lw=0.8)
    points.set_xlabel("approximation gap: log p(x) - ELBO(q*)")
    points.set_ylabel("amortisation gap: ELBO(q*) - ELBO(q)")
    points.set_title(f"each of the {gaps['points']} test images", fontsize=10)
    points.grid(alpha=0.3)
    for b, rows in enumerate(gaps["refinement"]["trace"]):
        rows = np.asarray(rows, dtype=np.float64)
        trace.plot(rows[:, 0], rows[:, 1], "o-", ms=3, label=f"batch {b + 1}" if b < 8 else None)
    trace.set_xlabel("Adam step")
    trace.set_ylabel("mean held-out ELBO (nats)")
    trace.set_title("refinement of q(z|x) with the decoder fixed", fontsize=10)
    trace.grid(alpha=0.3)
    if len(gaps["refinement"]["trace"]) > 1:
        trace.legend(fontsize=8, loc="lower right")
    fig.suptitle(titled(f"Inference gaps (Cremer et al.): log p(x) {gaps['log_likelihood']:.2f}, ELBO(q*) "
                        f"{gaps['elbo_refined']:.2f}, ELBO(q) {gaps['elbo_amortised']:.2f} nats",
                        analysis_title(result)), fontsize=11)
    return canvas.save(fig, path)


def plot_unit_activity(result, path):
    """``unit_activity.png`` from an ``analysis.json`` dict: the activity Cov_x(E_q[z_i]) of each latent
    unit of each stochastic layer on a log scale, with the threshold of the active units. Returns the path."""
    layers = result["layers"]
    width = max(8.0, 0.25 * max(len(layer["activity"]) for layer in layers) + 3.5)  # 1.5 in: the legends
    fig = canvas.new_figure(width, 3.2 * len(layers) + 0.9, layout="constrained")
    for ax, layer in zip(np.atleast_1d(fig.subplots(len(layers), 1)), layers):
        activity = np.asarray(layer["activity"], dtype=np.float64)
        threshold = layer["activity_threshold"]
        active = activity > threshold
        shown = np.maximum(activity, 1e-12)  # a dead unit's variance can be 0: keep it on the log axis
        for chosen, colour, label in ((active, "C0", "active"), (~active, "0.6", "inactive")):
            if chosen.any():
                ax.bar(np.flatnonzero(chosen), shown[chosen], color=colour, label=label)
        ax.axhline(threshold, color="C3", lw=1, ls="--", label=f"threshold {threshold:g}")
        ax.set_ylim(min(shown.min(), threshold) / 3, max(shown.max(), threshold) * 3)
        canvas.integer_axis(ax, 0, len(activity) - 1)
        ax.set_yscale("log")
        ax.set_xlabel(f"latent unit of {_layer_name(layer, len(layers))} ({layer['posterior']}, d = {layer['latent']})")
        ax.set_ylabel("Cov$_x$(E$_q$[$z_i$])")
        ax.set_title(f"{layer['active_units']} of {layer['latent']} units active", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside the bars
    fig.suptitle(wrap(titled("Active units (Burda et al.): variance over the test images of each posterior mean",
                             analysis_title(result)), width, 11), fontsize=11)
    return canvas.save(fig, path)


def plot_surgery(result, path):
    """``surgery.png`` from an ``analysis.json`` dict without gaps (a hierarchy): the ELBO surgery of each
    layer that has one (:func:`plot_gaps` draws it beside the gaps otherwise). Returns the path."""
    surgeries = _surgeries(result)
    fig = canvas.new_figure(1.0 + 4.0 * len(surgeries), 4.4, layout="constrained")
    for ax, layer in zip(np.atleast_1d(fig.subplots(1, len(surgeries))), surgeries):
        _draw_surgery(ax, layer, len(result["layers"]))
    fig.suptitle(wrap(titled("ELBO surgery (Hoffman & Johnson): mean KL = I(n, z) + KL(q(z) || p(z))",
                             analysis_title(result)), 1.0 + 4.0 * len(surgeries), 11), fontsize=11)
    return canvas.save(fig, path)


def plot_analysis(result, out_dir):
    """``gaps.png`` (or ``surgery.png`` for a hierarchy with an ELBO surgery) and ``unit_activity.png`` of an
    ``analysis.json`` dict into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    if result.get("gaps"):
        first = [plot_gaps(result, out_dir / "gaps.png")]
    else:
        first = [plot_surgery(result, out_dir / "surgery.png")] if _surgeries(result) else []
    return first + [plot_unit_activity(result, out_dir / "unit_activity.png")]
