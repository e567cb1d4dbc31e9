"""Fused log-densities and KL terms (the differentiable twins of gvae.kernels.densities)."""
from .. import kernels
from ..autodiff import defvjp_joint, primitive
from ..kernels import array_module
from ..rules.broadcast import unbroadcast

__all__ = ["bernoulli_loglik", "diag_normal_kl", "band_normal_kl", "categorical_log_prob"]


@primitive
def bernoulli_loglik(logits, x):
    """sum_j x_j l_j - softplus(l_j) over the last axis; logits (*S, *B, N), x (*B, N) -> (*S, *B)."""
    return kernels.bernoulli_loglik(logits, x)[0]


def _bernoulli_vjp(dl, argnums, logits, x):
    if 1 in argnums:
        raise ValueError("bernoulli_loglik: no gradient with respect to the observations x")
    return lambda g: (kernels.binary("multiply", g[..., None], dl), None)


defvjp_joint(bernoulli_loglik, _bernoulli_vjp,
             forward=lambda logits, x: kernels.bernoulli_loglik(logits, x, want_grad=True))


@primitive
def diag_normal_kl(mu, sigma):
    """KL(N(mu, diag sigma^2) || N(0, I)) over the last axis; mu, sigma (*B, D) -> (*B,)."""
    return kernels.diag_normal_kl(mu, sigma)[0]


def _kl_vjp(grads, argnums, mu, sigma):
    dmu, dsigma = grads
    return lambda g: (kernels.binary("multiply", g[..., None], dmu), kernels.binary("multiply", g[..., None], dsigma))


defvjp_joint(diag_normal_kl, _kl_vjp, forward=lambda mu, sigma: kernels.diag_normal_kl(mu, sigma, want_grad=True))


@primitive
def band_normal_kl(L, offsets, mu, check=True):
    """KL(N(mu, (L L^T)^-1) || N(0, I)) = (tr (L L^T)^-1 + |mu|^2 - n) / 2 + log det L, for a band factor L
    (*B, K, n) on ``offsets`` (:mod:`gvae.kernels.band`) and mu (*B', n) broadcasting with *B -> the
    broadcast batch shape. One tape entry and one VJP where the same sum of band_trace_inv, band_logdet
    and the mean's term took seven (the same values, bit for bit). ``check`` as the band kernels take it."""
    return _band_kl(L, offsets, mu, check, False)


def _band_kl(L, offsets, mu, check, keep):
    """The KL's value, and with ``keep`` (the traced forward) also what the trace kept of L for its VJP."""
    if mu.shape[-1] != L.shape[-1]:
        raise ValueError(f"band_normal_kl: mu has length {mu.shape[-1]} in its last axis, L has n={L.shape[-1]}")
    if keep:
        trace, kept = kernels.band_trace_inv(L, offsets, check=check, keep=True)
    else:
        trace, kept = kernels.band_trace_inv(L, offsets, check=check), None
    b = kernels.binary  # (kernels, not NumPy's operators: a recorded training step holds them)
    norm2 = kernels.sum_axes(b("multiply", mu, mu), axis=-1)
    half = b("multiply", 0.5, b("subtract", b("add", trace, norm2), mu.shape[-1]))
    kl = b("add", half, kernels.band_logdet(L, check=check))
    return (kl, kept) if keep else kl


def _band_kl_vjp(kept, argnums, L, offsets, mu, check=True):
    """dKL/dL = (1/2) d tr/dL + diag(1 / L_ii) (the trace's VJP kernel, reading the factors' inverses the
    forward kept where it ran on the dense inverse; the log-determinant's term added to its main diagonal),
    dKL/dmu = mu; g summed over the axes where mu broadcast L's batch."""
    def vjp(g):
        gL = gmu = None
        if 0 in argnums:
            gb = unbroadcast(g, L.shape[:-2], kernels.sum_axes).astype(L.dtype, copy=False)
            gL = kernels.band_trace_inv_grad(L, offsets, kernels.binary("multiply", 0.5, gb), check=False, kept=kept)
            diagonal = gL[..., 0, :]
            kernels.binary("add", diagonal, kernels.binary("divide", gb[..., None], L[..., 0, :]), out=diagonal)
        if 2 in argnums:
            gmu = kernels.binary("multiply", g[..., None], mu)
        return gL, None, gmu
    return vjp


defvjp_joint(band_normal_kl, _band_kl_vjp,
             forward=lambda L, offsets, mu, check=True: _band_kl(L, offsets, mu, check, True))


def _checked_labels(labels, n_classes, xp):
    """``labels`` as an integer array of ``xp`` in 0..n_classes-1, else a ValueError/TypeError naming them.

    Checked because take_along_axis would read label -1 as the last class (a wrong value, silently) and
    fail on label C with an IndexError. Min and max are two reductions on the labels' own device (NumPy or
    CuPy), far cheaper than the softmax they index, and one read from it (the values only on failure)."""
    if not hasattr(labels, "dtype"):
        labels = xp.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"categorical_log_prob: labels must be integers (class indices 0..{n_classes - 1}), "
                        f"got dtype {labels.dtype}")
    if labels.size:
        low, high = labels.min(), labels.max()
        if bool((low < 0) | (high >= n_classes)):
            low, high = int(low), int(high)
            bad = low if low < 0 else high
            raise ValueError(f"categorical_log_prob: labels must be class indices in 0..{n_classes - 1} "
                             f"(logits have C={n_classes} classes in their last axis), got label {bad} "
                             f"(labels range over {low}..{high})")
    return labels


def _categorical_forward(logits, labels):
    """(log q(y | logits), softmax(logits)): the value and what its gradient needs (one kernel)."""
    labels = _checked_labels(labels, logits.shape[-1], array_module(logits))
    return kernels.categorical_log_prob(logits, labels)


@primitive
def categorical_log_prob(logits, labels):
    """log softmax(logits)_y = l_y - log sum_c exp(l_c) over the last axis: the log-probability of the
    integer class ``labels`` (*B,) in 0..C-1 under a softmax of ``logits`` (*S, *B, C) -> (*S, *B)."""
    return _categorical_forward(logits, labels)[0]


def _categorical_vjp(probs, argnums, logits, labels):
    # The labels are integers (value_and_grad traces floating arrays only): a gradient for the logits alone.
    # d/dl_c (l_y - logsumexp l) = [c = y] - softmax(l)_c
    return lambda g: (kernels.categorical_grad(g, labels, probs), None)


defvjp_joint(categorical_log_prob, _categorical_vjp, forward=_categorical_forward)
