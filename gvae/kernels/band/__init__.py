"""Banded lower-triangular factors: solves, products, log-determinant, exact diagonal and trace of the
inverse.

Storage (docs/api.md, section 1): ``offsets`` is a tuple of strictly increasing ints starting at 0 and
``L`` has shape ``(*batch, K, n)`` with ``L[..., k, i] = L_{i, i - offsets[k]}``; the slots with
``i < offsets[k]`` are ignored whatever they hold. The main diagonal is strictly positive.

Right-hand sides ``b`` of shape ``(*lead, n)`` broadcast with ``batch`` by NumPy rules. The broadcast
result axes split into *factor* axes (where ``L`` has the full size) and *sample* axes (where ``L`` has
size 1 or no axis at all); the kernels see ``L`` as (F, K, n) without any copy and the right-hand sides
as (S, F, n), samples first, so ``L (B, K, n)`` with ``b (S, B, n)`` needs no copy of either.

Every function checks its arguments and raises ``ValueError`` naming the problem (``TypeError`` for a
dtype other than float32/float64 or mixed dtypes, as everywhere in :mod:`gvae.kernels`). The scans for a
non-positive diagonal and for NaN/inf cost no extra pass over memory: the kernels count diagonal
entries <= 0 and return a checksum of their outputs and of the diagonals, which any NaN or inf in the
inputs reaches; only when that flags a problem are the inputs scanned, to name the culprit (a result
that overflowed from finite inputs is returned as it is). ``check=False`` ignores those flags.
"""
import functools
import math

import numpy as np

from . import logdet_cpu, product_cpu, substitution_cpu, trace_cpu  # noqa: F401  (register the CPU kernels)
from ..backend import array_module, implementation
from ..checks import float_array, real_array, same_dtype

__all__ = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec", "band_logdet", "band_trace_inv",
           "band_diag_inv", "band_outer", "band_logdet_grad", "band_trace_inv_grad", "band_diag_inv_grad",
           "validate_offsets"]


# --------------------------------------------------------------------------------------------------
# Checks and layout
# --------------------------------------------------------------------------------------------------

def validate_offsets(name, offsets, n=None, K=None):
    """Validated offsets as a read-only int64 array (validation cached per tuple, n and K); errors are
    ``ValueError`` naming ``name`` and what was expected."""
    try:
        tup = tuple(offsets)
    except TypeError:
        raise ValueError(f"{name}: offsets must be a sequence of ints, got {offsets!r}") from None
    # The types are checked before the cache: 1.0 and True are equal to 1 as keys.
    if not all(isinstance(o, (int, np.integer)) and not isinstance(o, (bool, np.bool_)) for o in tup):
        raise ValueError(f"{name}: offsets must be ints, got {tup!r}")
    try:
        return _offsets_cached(tuple(int(o) for o in tup), n, K)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


@functools.lru_cache(maxsize=1024)
def _offsets_cached(tup, n, K):
    if not tup:
        raise ValueError("offsets must not be empty (offsets[0] == 0 is the main diagonal)")
    if tup[0] != 0:
        raise ValueError(f"offsets[0] must be 0 (the main diagonal), got {tup!r}")
    if any(b <= a for a, b in zip(tup, tup[1:])):
        raise ValueError(f"offsets must be strictly increasing, got {tup!r}")
    if K is not None and len(tup) != K:
        raise ValueError(f"L holds K={K} diagonals (axis -2) but offsets has {len(tup)} entries {tup!r}")
    if n is not None and tup[-1] >= n:
        raise ValueError(f"offsets must be < n={n}, got largest offset {tup[-1]}")
    arr = np.array(tup, dtype=np.int64)
    arr.setflags(write=False)
    return arr


def _finite(name, what, a, xp):
    """Raise if ``a`` holds NaN or inf: one summing pass (no temporary), exact test only if it fails."""
    if a.size == 0:
        return
    if not bool(xp.isfinite(a.sum())) and not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name}: {what} contains NaN or inf")


def _shape(name, L):
    """Validate ``L`` as a band factor; returns (K, n)."""
    float_array(f"{name} L", L, 2)
    K, n = L.shape[-2:]
    if n < 1 or K < 1:
        raise ValueError(f"{name}: L must have shape (*batch, K, n) with K, n >= 1, got {L.shape}")
    return K, n


def _factor(name, L, offsets):
    """Validate ``L`` and ``offsets``; returns (offsets as an int64 array, K, n)."""
    K, n = _shape(name, L)
    return validate_offsets(name, offsets, n, K), K, n


def _verdict(name, flags, L, offs, others=()):
    """Turn a kernel's (count of diagonal entries <= 0, checksum) into an error naming the problem:
    NaN/inf in L's diagonal, a non-positive diagonal, NaN/inf in L's existing slots or in ``others``
    ((argname, array) pairs). A non-finite checksum from finite inputs (overflow) is accepted."""
    bad, chk = flags
    if bad == 0 and math.isfinite(chk):
        return
    xp = array_module(L)
    _finite(name, "L", L[..., 0, :], xp)
    if bad:
        raise ValueError(f"{name}: the main diagonal L[..., 0, :] must be strictly positive "
                         f"({int(bad)} entries are not)")
    if offs is not None:
        for k, o in enumerate(offs.tolist()):
            _finite(name, "L", L[..., k, o:], xp)
    for argname, a in others:
        _finite(name, argname, a, xp)


@functools.lru_cache(maxsize=512)
def _plan_cached(batch, leads):
    out = tuple(np.broadcast_shapes(batch, *leads))
    nd = len(out)
    bfull = (1,) * (nd - len(batch)) + tuple(batch)
    sample = [a for a in range(nd) if bfull[a] == 1 and out[a] != 1]
    factor = [a for a in range(nd) if not (bfull[a] == 1 and out[a] != 1)]
    perm = tuple(sample + factor)
    identity = perm == tuple(range(nd))
    inverse = None if identity else tuple(int(a) for a in np.argsort(perm))
    return out, (None if identity else perm), inverse, math.prod(out[a] for a in sample), math.prod(batch)


def _plan(name, batch, leads):
    """Broadcast shape of the factor batch and the right-hand-side leads, and the axis permutation
    that puts the sample axes (where L is broadcast) first and the factor axes last:
    (out, perm or None for the identity, inverse perm, S, F). Cached per shapes."""
    try:
        return _plan_cached(tuple(batch), tuple(map(tuple, leads)))
    except ValueError:
        raise ValueError(f"{name}: right-hand side batch shape(s) {', '.join(map(str, leads))} do not "
                         f"broadcast with the factor batch shape {batch}") from None


def _to_canonical(xp, b, plan):
    """b as a C-contiguous (S, F, n) array: a view when b already has that layout, else one copy."""
    out, perm, _, S, F = plan
    n = b.shape[-1]
    if perm is None and b.shape[:-1] == out and b.flags.c_contiguous:
        return b.reshape(S, F, n)
    b = xp.broadcast_to(b, out + (n,))
    if perm is not None:
        b = b.transpose(perm + (len(out),))
    return xp.ascontiguousarray(b).reshape(S, F, n)


def _from_canonical(xp, y, plan):
    out, perm, inverse, _, _ = plan
    n = y.shape[-1]
    if perm is None:
        return y.reshape(out + (n,))
    y = y.reshape(tuple(out[a] for a in perm) + (n,))
    return xp.ascontiguousarray(y.transpose(inverse + (len(out),)))


def _rhs(name, argname, v, n, L):
    float_array(f"{name} {argname}", v, 1)
    same_dtype(name, L, v)
    if v.shape[-1] != n:
        raise ValueError(f"{name}: {argname} has length {v.shape[-1]} in its last axis, L has n={n}")


def _vector_op(kernel, L, offsets, b, argname, check):
    offs, K, n = _factor(kernel, L, offsets)
    _rhs(kernel, argname, b, n, L)
    xp = array_module(L, b)
    plan = _plan(kernel, L.shape[:-2], [b.shape[:-1]])
    Lc = xp.ascontiguousarray(L).reshape(plan[4], K, n)
    bc = _to_canonical(xp, b, plan)
    y = xp.empty_like(bc)
    if y.size:
        flags = implementation(kernel, Lc, bc)(Lc, offs, bc, y)
        if check:
            _verdict(kernel, flags, L, offs, [(argname, b)])
    return _from_canonical(xp, y, plan)


# --------------------------------------------------------------------------------------------------
# Contract functions
# --------------------------------------------------------------------------------------------------

def band_solve_t(L, offsets, b, *, check=True):
    """x with L^T x = b (backward substitution); x has the broadcast shape of b and L's batch.

    With b ~ N(0, I), x ~ N(0, (L L^T)^{-1}): the reparameterised sample of a banded-precision family."""
    return _vector_op("band_solve_t", L, offsets, b, "b", check)


def band_solve(L, offsets, b, *, check=True):
    """x with L x = b (forward substitution)."""
    return _vector_op("band_solve", L, offsets, b, "b", check)


def band_matvec_t(L, offsets, x, *, check=True):
    """L^T x."""
    return _vector_op("band_matvec_t", L, offsets, x, "x", check)


def band_matvec(L, offsets, x, *, check=True):
    """L x."""
    return _vector_op("band_matvec", L, offsets, x, "x", check)


def band_logdet(L, *, check=True):
    """log det L = sum_i log L[..., 0, i], shape ``L.shape[:-2]``."""
    K, n = _shape("band_logdet", L)
    xp = array_module(L)
    F = math.prod(L.shape[:-2])
    Lc = xp.ascontiguousarray(L).reshape(F, K, n)
    out = xp.empty(F, dtype=L.dtype)
    if F:
        flags = implementation("band_logdet", Lc)(Lc, out)
        if check:
            _verdict("band_logdet", flags, L, None)
    return out.reshape(L.shape[:-2])


def band_trace_inv(L, offsets, *, check=True):
    """tr((L L^T)^{-1}) = tr(Sigma), exactly, shape ``L.shape[:-2]``; O(n) per factor for the chain,
    O(n K w) with w = offsets[-1] otherwise (selected inversion over a sliding window of Sigma), with
    O(n K + w^2) float64 of scratch per lane of a lock-step block of 8 factors on the CPU."""
    offs, K, n = _factor("band_trace_inv", L, offsets)
    xp = array_module(L)
    F = math.prod(L.shape[:-2])
    Lc = xp.ascontiguousarray(L).reshape(F, K, n)
    out = xp.empty(F, dtype=L.dtype)
    if F:
        flags = implementation("band_trace_inv", Lc)(Lc, offs, out)
        if check:
            _verdict("band_trace_inv", flags, L, offs)
    return out.reshape(L.shape[:-2])


def band_diag_inv(L, offsets, *, check=True):
    """diag((L L^T)^{-1}) = diag(Sigma), exactly, shape ``L.shape[:-2] + (n,)``: the recursion of
    :func:`band_trace_inv` keeping each Sigma_ii (same cost and scratch)."""
    offs, K, n = _factor("band_diag_inv", L, offsets)
    xp = array_module(L)
    F = math.prod(L.shape[:-2])
    Lc = xp.ascontiguousarray(L).reshape(F, K, n)
    out = xp.empty((F, n), dtype=L.dtype)
    if F:
        flags = implementation("band_diag_inv", Lc)(Lc, offs, out)
        if check:
            _verdict("band_diag_inv", flags, L, offs)
    return out.reshape(L.shape[:-2] + (n,))


# --------------------------------------------------------------------------------------------------
# Helpers for the vector-Jacobian products
# --------------------------------------------------------------------------------------------------

def band_outer(a, c, offsets, batch_shape, scale=1.0):
    """Band-restricted outer products summed over samples: the L-gradient of every solve and product.

    ``a`` and ``c`` have shapes ``(*lead, n)`` that broadcast with ``batch_shape``; returns ``gL`` of
    shape ``(*batch_shape, K, n)`` with
    ``gL[..., k, i] = scale * sum_samples a[..., i] * c[..., i - offsets[k]]`` (zero for i < offsets[k]),
    summed over every broadcast axis on which the factor batch has size 1 or no axis.

    VJPs: x = L^{-T} b: gL = band_outer(x, L^{-1} g, scale=-1);  x = L^{-1} b: band_outer(L^{-T} g, x, -1);
    y = L x: band_outer(g, x);  y = L^T x: band_outer(x, g)."""
    name = "band_outer"
    float_array(f"{name} a", a, 1)
    float_array(f"{name} c", c, 1)
    same_dtype(name, a, c)
    n = a.shape[-1]
    if c.shape[-1] != n:
        raise ValueError(f"{name}: a and c must share the last axis, got {a.shape} and {c.shape}")
    batch = tuple(int(s) for s in batch_shape)
    scale = real_array(f"{name} scale", scale, np.float64)
    if scale.ndim:
        raise ValueError(f"{name}: scale must be a number, got shape {scale.shape}")
    offs = validate_offsets(name, offsets, n)
    K = len(offs)
    xp = array_module(a, c)
    plan = _plan(name, batch, [a.shape[:-1], c.shape[:-1]])
    S, F = plan[3], plan[4]
    ac = _to_canonical(xp, a, plan)
    cc = _to_canonical(xp, c, plan)
    # Split the samples across threads only when there are too few factors to keep them busy.
    Q = 1 if F >= 8 or S < 64 else min(8, S // 32)
    g = xp.empty((Q, F, K, n), dtype=a.dtype)
    if F:
        implementation(name, ac, cc)(ac, cc, offs, float(scale), g)
    g = g[0] if Q == 1 else g.sum(axis=0)
    return g.reshape(batch + (K, n))


def _weights(name, L, g, shape):
    """The VJP weights ``g`` (real numbers) as L's dtype, broadcast to ``shape``."""
    xp = array_module(L)
    g = real_array(f"{name} g", g, L.dtype, xp)
    try:
        return xp.broadcast_to(g, shape)
    except ValueError:
        raise ValueError(f"{name}: g of shape {g.shape} does not broadcast to {shape}") from None


def band_logdet_grad(L, g, *, check=True):
    """g[..., None] * d log det L / dL: ``g / L[..., 0, :]`` on the main diagonal, zero elsewhere; ``g``
    broadcasts to ``L.shape[:-2]``. Checks as :func:`band_logdet` (a diagonal entry <= 0, where the
    log-determinant does not exist, or NaN/inf in the diagonal), and NaN/inf in ``g``."""
    name = "band_logdet_grad"
    _shape(name, L)
    xp = array_module(L)
    gb = _weights(name, L, g, L.shape[:-2])
    d = L[..., 0, :]
    if check:  # before dividing by a zero
        _verdict(name, (int(xp.count_nonzero(d <= 0)), 0.0), L, None)
    gL = xp.zeros(L.shape, dtype=L.dtype)
    gL[..., 0, :] = gb[..., None] / d
    if check:  # the quotients carry any NaN/inf of g or d (an infinite d through d's own sum)
        chk = float(d.sum(dtype=xp.float64)) + float(gL[..., 0, :].sum(dtype=xp.float64))
        _verdict(name, (0, chk), L, None, [("g", gb)])
    return gL


def _sigma_grad(name, L, offsets, g, per_row, check):
    """The VJP kernels of the selected inversion: ``g`` one weight per factor (broadcast to
    ``L.shape[:-2]``, the trace's) or, with ``per_row``, one per Sigma_ii (to ``L.shape[:-2] + (n,)``)."""
    offs, K, n = _factor(name, L, offsets)
    xp = array_module(L)
    batch = L.shape[:-2]
    F = math.prod(batch)
    gb = _weights(name, L, g, batch + ((n,) if per_row else ()))
    Lc = xp.ascontiguousarray(L).reshape(F, K, n)
    gc = xp.ascontiguousarray(gb).reshape((F, n) if per_row else (F,))
    out = xp.empty((F, K, n), dtype=L.dtype)
    if F:
        flags = implementation(name, Lc)(Lc, offs, gc, out)
        if check:
            _verdict(name, flags, L, offs, [("g", gc)])
    return out.reshape(L.shape)


def band_trace_inv_grad(L, offsets, g, *, check=True):
    """g * d tr((L L^T)^{-1}) / dL on the band, i.e. ``-2 g (Sigma^2 L)`` restricted to the stored
    diagonals, zero in the slots that do not exist; shape of L. ``g`` broadcasts to ``L.shape[:-2]``.

    Reverse mode through the exact recursion of :func:`band_trace_inv`: O(n) per factor for the chain,
    O(n K w) otherwise. Scratch memory on the CPU, outside the chain: the band of Sigma's rows, n (w+1)
    float64 (w+1 rounded up to even) per lane of a lock-step block, plus O(n K + w^2) per lane, one block
    per running thread; a block has 8 lanes (8 factors, padded with the last) while 8 such bands fit in
    256 MiB, else 1 (the factors then run one at a time). A band past 256 MiB on one lane is kept in the
    fewest segments of k rows (m = ceil(n / k) of them) whose (m - 1) w + min(k + w, n) rows fit, at the
    cost of the forward sweep once more over all but the first segment (same result, bitwise); where
    none fits, in those that keep the fewest rows, about 2 sqrt(n w) + w. A thread holds at most
    max(256 MiB, those rows) (n = 10^5, w = 1000: 0.23 GB instead of 0.8; n = 10^6: 0.5 GB instead of 8)."""
    return _sigma_grad("band_trace_inv_grad", L, offsets, g, False, check)


def band_diag_inv_grad(L, offsets, g, *, check=True):
    """sum_i g_i d Sigma_ii / dL on the band, i.e. ``-2 (Sigma diag(g) Sigma L)`` restricted to the stored
    diagonals, zero in the slots that do not exist; shape of L. ``g`` broadcasts to
    ``L.shape[:-2] + (n,)``. Reverse mode through the recursion of :func:`band_trace_inv_grad`, seeded
    with g_i on each Sigma_ii instead of one g for all: same cost and scratch."""
    return _sigma_grad("band_diag_inv_grad", L, offsets, g, True, check)
