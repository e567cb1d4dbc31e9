"""What ``gvae analyze`` measures of a trained model on the test set (docs/howto/analysis.md): the active
latent units, rate and distortion, and the inference gaps on a sample of test points.

- Active units (Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", section 5.2): unit i
  is active when its activity A_i = Cov_x(E_q(z|x)[z_i]), the variance over the test images of its
  posterior mean, exceeds 0.01.
- Rate and distortion (Alemi et al., "Fixing a Broken ELBO"): R = mean KL(q(z|x) || p(z)) and
  D = -mean E_q[log p(x|z)] over the test images, in nats of the data; ELBO = -(D + R).
- The inference gaps of :mod:`gvae.evaluation.gaps`.
- ELBO surgery (:mod:`gvae.evaluation.surgery`) of the layer whose posterior depends on x alone and whose
  prior is N(0, I): the mean KL term split into the index-code mutual information and the KL from the
  aggregate posterior to the prior, on a sample of test points.

Results are per stochastic layer where the quantity belongs to one (``layers``, bottom first: active
units and rate, the KL term of each layer); the distortion belongs to the whole model. The gaps of a
hierarchy refine every layer's posterior (q* the product of the layers' refined q, see
:mod:`gvae.evaluation.gaps`); a model whose posterior has no heads to refine (top-down inference with the
precision merge) has ``gaps`` null and ``gaps_note`` says why.
"""
import dataclasses
import math
import time

import numpy as np

from ..kernels import array_module, device_of, generator, to_device, to_host
from .. import ops
from ..model.objectives import layer_terms
from ..training.memory import check_importance_sampling
from ..training.runs import open_run
from .gaps import inference_gaps, summarize
from .refine import RefineOptions
from .surgery import elbo_surgery

ACTIVITY_THRESHOLD = 0.01
GAP_BATCH, GAP_MEMORY_MB = 100, 256  # points refined at once; bound on one decoder pass of the gaps' sampling
SURGERY_NOTES = {  # which of a hierarchy's layers have an ELBO surgery (surgery_layers), and why the others have none
    "independent": "ELBO surgery of every layer: each code's posterior is a function of x alone and its prior is "
                   "N(0, I)",
    "bottom-up": "no ELBO surgery: bottom-up, the top layer's posterior is conditional on a sample of the layer "
                 "below, and a lower layer's prior is p(z_l | z_{l+1}), not N(0, I)",
    "top-down": "ELBO surgery of the top layer only: a lower layer's posterior and prior are conditional on a "
                "sample of the layer above"}


def unit_activity(model, params, x, batch_size=500):
    """A_i = Var over the rows of x (N, n) of the posterior mean E_q[z_i] (N >= 2), for each stochastic
    layer of the mean pass (:meth:`VAE.infer` without noise): a list bottom first of float64 host (d_l,),
    computed on x's device (one read per layer)."""
    if x.shape[0] < 2:
        raise ValueError(f"unit activity is a variance over data points: needs at least 2, got {x.shape[0]}")
    xp = array_module(x)
    means = [model.infer(params, x[s:s + batch_size])[0] for s in range(0, x.shape[0], batch_size)]
    return [to_host(xp.var(xp.concatenate([qs[layer].mu for qs in means]).astype(np.float64), axis=0))
            for layer in range(len(model.layers))]


def rate_distortion(model, params, x, rng, samples=10, batch_size=100):
    """(rates, distortion) for the rows of x: rates a list bottom first of each layer's KL term (N,)
    (closed form where it is one, see :func:`gvae.model.objectives.layer_terms`) and the distortion minus
    the reconstruction term (N,), float64 on the host, ``samples`` Monte Carlo samples of z per row, in
    nats of the data. ``rng``: a generator of x's device, where the batches' terms stay until one read of
    each result at the end."""
    if not (isinstance(samples, (int, np.integer)) and samples >= 1):
        raise ValueError(f"the samples of z per data point must be an integer >= 1, got {samples!r}")
    rates, distortions = [[] for _ in model.layers], []
    for s in range(0, x.shape[0], batch_size):
        xb = x[s:s + batch_size]
        eps = rng.standard_normal((samples, xb.shape[0], model.noise_size), dtype=model.dtype)
        rec, kls, _, _ = layer_terms(model, params, xb, eps, "analytic")
        for out, kl in zip(rates, kls):
            out.append(kl.astype(np.float64))
        distortions.append(-(ops.mean(rec, axis=0).astype(np.float64) + model.likelihood.nats_offset()))
    xp = array_module(x)
    return [to_host(xp.concatenate(r)) for r in rates], to_host(xp.concatenate(distortions))


def sample_points(n, points, seed):
    """The sorted indices of ``points`` distinct rows drawn from n with ``seed`` (1 <= points <= n)."""
    if not (isinstance(points, (int, np.integer)) and 1 <= points <= n):
        raise ValueError(f"the number of points must be an integer from 1 to {n}, got {points!r}")
    return np.sort(np.random.default_rng(seed).choice(n, size=points, replace=False))


def surgery_layers(model):
    """The indices (0 = bottom) of the layers whose ELBO surgery is measured: those whose posterior q(z_l|x)
    depends on x alone and whose prior is N(0, I). Every layer of a model with independent codes (the
    ladder); otherwise the top layer of one layer or of top-down inference. Bottom-up, a VAE's top layer's q
    is conditional on a sample of the layer below (its q(z_L|x) is a continuous mixture with no closed
    density), and every lower layer's prior is p(z_l|z_{l+1}): none."""
    top = len(model.layers) - 1
    if model.independent_codes:
        return list(range(top + 1))
    return [top] if top == 0 or model.inference == "top-down" else []


def _surgery_note(model):
    """The ``surgery_note`` of a hierarchy: :data:`SURGERY_NOTES` for its kind."""
    return SURGERY_NOTES["independent" if model.independent_codes else model.inference]


def surgery(model, params, x, rng, samples, at):
    """The ELBO surgery of layer ``at`` (one of :func:`surgery_layers`) over the rows of x (N, n),
    ``samples`` samples of z per row from ``rng`` (a generator of x's device): a JSON-ready dict of the
    means of :func:`gvae.evaluation.surgery.elbo_surgery`'s parts with their standard errors over the rows."""
    layer, used = model.layers[at], x.shape[0]
    q = model.infer(params, x)[0][at]
    eps = rng.standard_normal((samples, used, layer.size), dtype=model.dtype)
    return {"n_points": int(used), "samples": int(samples), "log_n": math.log(used),
            **summarize(elbo_surgery(layer.family, q, eps))}


def _points_note(asked, n):
    """``{"points_note": ...}`` when more points were asked than there are test images, else {}."""
    return {"points_note": f"{asked} points asked, {n} test images: all {n} used"} if asked > n else {}


def describe_surgery(layer, n_layers):
    """The line ``gvae analyze`` prints for the ELBO surgery of a layer of ``analysis.json`` (of a model
    with ``n_layers`` stochastic layers)."""
    s = layer["surgery"]
    where = f" of z{layer['layer'] + 1}" if n_layers > 1 else ""  # z1, z2, ... as docs/reference/commands.md names the layers (the file's index is from 0)
    note = f" ({s['points_note']})" if "points_note" in s else ""
    return (f"ELBO surgery{where}, {s['n_points']} points{note}: mean KL {s['mean_kl']:.2f} = mutual information "
            f"{_with_error(s, 'mutual_information')} (at most log N = {s['log_n']:.2f}) + marginal KL "
            f"{_with_error(s, 'marginal_kl')} nats")


def _with_error(summary, key):
    """``summary[key]`` and its standard error (where there is one) as text."""
    sem = summary[f"{key}_sem"]
    return f"{summary[key]:.2f}" + ("" if sem is None else f" +- {sem:.2f}")


def _refinable(model):
    """Whether the model's posterior has heads to refine (all but top-down inference with the precision
    merge, whose lower layers' q is a merge with the prior)."""
    return len(model.layers) == 1 or not (model.inference == "top-down" and model.merge == "precision")


def analyze(model, params, x, points=100, iw_samples=1000, options=RefineOptions(), seed=0,
            rd_samples=10, surgery_points=1000, surgery_samples=10, progress=False):
    """Everything ``gvae analyze`` reports for the test images x (N, n) (prepared observations, on
    their device), as a JSON-ready dict (docs/howto/analysis.md): ``layers`` (one dict per stochastic layer:
    ``active_units``, ``activity``, ``rate``, ``surgery``), ``rate``, ``distortion``, ``elbo`` and ``gaps``
    (means, standard errors and per-point values on ``points`` test images drawn with ``seed``). The
    ELBO surgery uses ``surgery_points`` test images, ``surgery_samples`` samples of z each."""
    timings = {}
    start = time.perf_counter()
    n = x.shape[0]
    one_layer = len(model.layers) == 1
    refinable = _refinable(model)
    asked, points = points, min(points, n)  # more points than images: all of them, and the result says so
    idx = sample_points(n, points, seed) if refinable else None  # checked before any work
    surgery_idx = sample_points(n, min(surgery_points, n), seed)
    if not (isinstance(surgery_samples, (int, np.integer)) and surgery_samples >= 1):
        raise ValueError(f"the samples of z per point of the ELBO surgery must be an integer >= 1, got "
                         f"{surgery_samples!r}")
    device = device_of(x)
    activities = unit_activity(model, params, x)
    rates, distortion = rate_distortion(model, params, x, generator(device, seed + 2), rd_samples)
    timings["active_units_and_rate_distortion"] = time.perf_counter() - start
    layers = [{"layer": i, "latent": layer.size, "posterior": layer.family.name,
               "active_units": int((activity > ACTIVITY_THRESHOLD).sum()), "activity": activity.tolist(),
               "activity_threshold": ACTIVITY_THRESHOLD, "rate": float(rate.mean()), "surgery": None}
              for i, (layer, activity, rate) in enumerate(zip(model.layers, activities, rates))]
    rate = np.sum(rates, axis=0)
    result = {"n_test": int(n), "seed": int(seed), "rd_samples": int(rd_samples), "layers": layers,
              "rate": float(rate.mean()), "distortion": float(distortion.mean()),
              "elbo": float(-(rate + distortion).mean()), "gaps": None, "seconds": timings}
    if not one_layer:
        result["surgery_note"] = _surgery_note(model)
    start, chosen = time.perf_counter(), x[to_device(surgery_idx, device)]
    for at in surgery_layers(model):  # each layer's draws from a stream of its own (the top layer's: seed + 3)
        stream = generator(device, seed + 3 + len(model.layers) - 1 - at)
        layers[at]["surgery"] = {**surgery(model, params, chosen, stream, surgery_samples, at),
                                 **_points_note(surgery_points, n)}
        timings["surgery"] = time.perf_counter() - start
    if not refinable:
        result["gaps_note"] = ("no inference gaps: with the precision merge a layer's posterior is the merge of a "
                               "head with its conditional prior, not a head of its family that could be refined")
        return result
    start = time.perf_counter()
    chosen = x[to_device(idx, device)]  # the index goes to x's device: a device array takes no host index
    per, refinements = inference_gaps(model, params, chosen, generator(device, seed + 1), iw_samples, options,
                                      batch_size=GAP_BATCH, memory_mb=GAP_MEMORY_MB, progress=progress)
    timings["gaps"] = time.perf_counter() - start
    result["gaps"] = {"points": int(points), "indices": idx.tolist(), "iw_samples": int(iw_samples),
                      "refine": dataclasses.asdict(options), **summarize(per),
                      "refinement": {key: [r[key] for r in refinements] for key in refinements[0]},
                      "per_point": {key: v.tolist() for key, v in per.items()}}
    result["gaps"].update(_points_note(asked, n))
    return result


def analyze_run(run_dir, data=None, which="best", limit=None, points=100, iw_samples=1000, refine_steps=2000,
                seed=0, surgery_points=1000, surgery_samples=10, device="cpu", progress=False):
    """:func:`analyze` of the run folder ``run_dir`` (its ``which`` parameters) on the first ``limit`` test
    images (all when None) of ``data``: a data set as :func:`gvae.io.mnist.load_mnist` returns it, or the
    path to give it (None: MNIST from the cache), loaded once the run is. The work is done on ``device``
    (the parameters and the test images are copied there once). The result names the run."""
    run = open_run(run_dir, which, device)
    model, config = run.model, run.config
    if _refinable(model):  # the gaps' arrays: 2 proposals x K samples x a batch of points, twice
        check_importance_sampling(model, min(points, GAP_BATCH), 4 * iw_samples, GAP_MEMORY_MB * 2 ** 20)
    run = run.with_test_set(data, limit)
    result = analyze(model, run.params, to_device(run.test_x, device), points, iw_samples,
                     RefineOptions(max_steps=refine_steps), seed, surgery_points=surgery_points,
                     surgery_samples=surgery_samples, progress=progress)
    return {"run": str(run_dir), "params": which, "posterior": config.posterior, "latent": config.latent,
            "hidden": config.hidden, "likelihood": config.likelihood, **result}
