"""Refinement of local variational parameters: each data point's own q(z|x_b), seeded by the encoder and
optimised with the decoder fixed, to the best ELBO its family reaches (the E-step of variational EM;
Cremer, Li & Duvenaud, "Inference Suboptimality in Variational Autoencoders", call the result q*).

The free parameters are the family's head values h_b (the encoder's output row for x_b, see
:mod:`gvae.model.local`), all points of a batch at once: the objective is the sum over points of their
ELBOs, so each row's gradient is its own point's, and Adam's per-coordinate steps keep the points
independent. Each step draws fresh noise (``samples`` reparameterised samples per point, KL in closed
form): an unbiased gradient, with no fixed noise set to overfit.

Averaging. With fresh noise Adam does not settle: its iterates jitter around the optimum by about the
learning rate. The heads are therefore averaged over each window of ``check_every`` steps (Polyak &
Juditsky, "Acceleration of Stochastic Approximation by Averaging"), and the optimisation continues from
that average. On a 6-d factor-analysis posterior this took the dense family from 0.02-0.04 nats below its
optimum (the last iterate) to 0.001-0.004 nats (tests/test_gaps.py measures it).

Stopping rule. At the end of each window the ELBO of every point at the averaged heads is estimated on one
fixed held-out noise set (``eval_samples`` samples, drawn once, never used for a gradient; the same noise
at every check, so two checks differ by the change of the heads, not by the noise). When the mean gain
over the points since the last check is below ``tol`` nats, the learning rate is multiplied by ``decay``;
the ``max_decays + 1``-th such plateau, or ``max_steps``, ends the refinement. The result is the heads of
the last check, not each point's best check: picking the best of many checks on one noise set would fit
that noise. Only a point whose final held-out ELBO is below its encoder's keeps the encoder's heads (a
choice between two). A step or check with a non-finite value restarts Adam from the last checked heads at
the decayed rate (it counts as a plateau). The reported ELBO of the refined q is estimated afterwards on
fresh noise (:mod:`gvae.evaluation.gaps`).
"""
import dataclasses
import math

import numpy as np

from .. import kernels
from ..autodiff import value_and_grad
from ..kernels import array_module
from ..model.local import LocalVAE, with_heads
from ..model.objectives import elbo
from .. import ops
from ..training.adam import Adam


@dataclasses.dataclass(frozen=True)
class RefineOptions:
    """The settings of :func:`refine_heads` (the defaults, and how they were chosen: docs/howto/analysis.md)."""
    max_steps: int = 2000
    lr: float = 0.05
    samples: int = 10
    check_every: int = 200
    eval_samples: int = 100
    tol: float = 0.01
    decay: float = 0.3
    max_decays: int = 2

    def __post_init__(self):
        for name in ("max_steps", "samples", "check_every", "eval_samples"):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"refinement: {name} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.max_decays, (int, np.integer)) and self.max_decays >= 0):
            raise ValueError(f"refinement: max_decays must be an integer >= 0, got {self.max_decays!r}")
        for name, ok in (("lr", self.lr > 0), ("tol", self.tol >= 0), ("decay", 0 < self.decay < 1)):
            if not (math.isfinite(getattr(self, name)) and ok):
                raise ValueError(f"refinement: {name} out of range, got {getattr(self, name)!r} "
                                 "(lr > 0, tol >= 0, 0 < decay < 1)")


def chunked_elbo(model, params, x, eps, chunk):
    """The ELBO of each row of x (B,) with the samples eps (S, B, d) taken ``chunk`` at a time (so that one
    decoder pass stays small), KL in closed form; the mean over S of the per-sample estimates."""
    total = 0.0
    for s in range(0, eps.shape[0], chunk):
        e = eps[s:s + chunk]
        total = total + elbo(model, params, x, e, "analytic") * e.shape[0]
    return total / eps.shape[0]


def refine_heads(model, params, x, h0, rng, options=RefineOptions(), chunk=None, bar=None):
    """Refine the heads h0 (B, total head size: every layer's, :mod:`gvae.model.local`) of the points x
    (B, n) of ``model`` (a :class:`gvae.model.VAE` with parameters ``params``, held fixed) by Adam on the
    sum of their ELBOs; see the module docstring.

    ``rng`` is a generator of x's device; ``chunk`` the samples per decoder pass of the held-out estimate
    (None: all at once); ``bar`` a tqdm bar advanced once per step. Returns ``(h, info)``: the refined heads
    (B, head_size) in the model's dtype, and a dict with ``steps`` (Adam steps taken), ``stopped``
    ("plateau" or "max_steps"), ``restarts`` (non-finite steps or checks), ``kept_encoder`` (points that
    kept the encoder's heads) and ``trace`` (one ``[step, mean held-out ELBO, learning rate]`` per check,
    step 0 the encoder's)."""
    local = LocalVAE(model)
    xp = array_module(x)
    b, d, size = x.shape[0], model.noise_size, sum(local.head_sizes)
    h = xp.array(h0, dtype=model.dtype, copy=True, order="C")
    if h.shape != (b, size):
        raise ValueError(f"refine_heads: heads of shape {tuple(h0.shape)} for {b} points; expected ({b}, {size})")
    grad = xp.empty_like(h)
    step = value_and_grad(lambda heads, xb, eps: -ops.sum(elbo(local, with_heads(params, heads), xb, eps,
                                                                "analytic")), out=grad)
    held = rng.standard_normal((options.eval_samples, b, d), dtype=model.dtype)
    chunk = chunk or options.eval_samples

    def heldout(heads):
        return chunked_elbo(local, with_heads(params, heads), x, held, chunk).astype(np.float64)

    first = heldout(h)
    if not bool(xp.isfinite(first).all()):
        bad = int((~xp.isfinite(first)).sum())
        raise ValueError(f"refinement: the ELBO of the encoder's posterior is not finite for {bad} of {b} points; "
                         "the model cannot be analysed")
    encoder = h.copy()
    last, checked = first, h.copy()
    total, count = xp.zeros_like(h), 0  # the sum of the iterates since the last check
    adam = Adam(h.reshape(-1), lr=options.lr)
    trace = [[0, float(first.mean()), options.lr]]
    steps = restarts = plateaus = 0

    def plateau():
        nonlocal plateaus
        plateaus += 1
        adam.lr *= options.decay
        return plateaus > options.max_decays

    while steps < options.max_steps:
        eps = rng.standard_normal((options.samples, b, d), dtype=model.dtype)
        loss, _ = step(h, x, eps)
        norm = math.sqrt(kernels.sum_squares(grad.reshape(-1)))
        finite = math.isfinite(float(loss)) and math.isfinite(norm)
        if finite:
            adam.update(grad.reshape(-1), norm)
            total += h
            count += 1
            steps += 1
            if bar is not None:
                bar.update(1)
            if steps % options.check_every and steps < options.max_steps:
                continue
            h[...] = total / count  # the window's average iterate
            total[...], count = 0, 0
            val = heldout(h)
            finite = bool(xp.isfinite(val).all())
        if not finite:  # back to the last checked heads, with a fresh Adam at a lower rate
            restarts += 1
            h[...] = checked
            total[...], count = 0, 0
            done = plateau()
            adam = Adam(h.reshape(-1), lr=adam.lr)
            if done:
                break
            continue
        gain = float((val - last).mean())
        last, checked = val, h.copy()
        trace.append([steps, float(val.mean()), adam.lr])
        if gain < options.tol and plateau():
            break
    # A point whose held-out ELBO ended below its encoder's keeps the encoder's heads.
    worse = last < first
    checked = xp.where(worse[:, None], encoder, checked)  # a select: masking would read the count on a GPU
    stopped = "plateau" if plateaus > options.max_decays else "max_steps"
    return checked, {"steps": steps, "stopped": stopped, "restarts": restarts, "kept_encoder": int(worse.sum()),
                     "trace": trace}
