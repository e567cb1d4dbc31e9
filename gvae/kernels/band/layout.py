"""Checks and layout shared by the banded-factor fronts: validated offsets, the verdict on a kernel's
flags (naming a non-positive diagonal or the argument holding NaN/inf), and the canonical (S, F, n)
layout of right-hand sides that broadcast against the factor batch (see the package's docstring)."""
import functools
import math

import numpy as np

from ..arithmetic import contiguous
from ..backend import array_module, implementation
from ..checks import float_array, real_array, same_dtype


def validate_offsets(name, offsets, n=None, K=None, argname="L"):
    """Validated offsets as a read-only int64 array (validation cached per tuple, its entries' types, n and
    K); errors are ``ValueError`` naming ``name`` and what was expected, and ``argname`` the array holding
    the K diagonals."""
    try:
        tup = tuple(offsets)
    except TypeError:
        raise ValueError(f"{name}: offsets must be a sequence of ints, got {offsets!r}") from None
    # The entries' types are part of the key: 1.0 and True are equal to 1 as keys, and are refused.
    key = (tup, tuple(map(type, tup)))
    try:
        hash(key)
    except TypeError:
        raise ValueError(f"{name}: offsets must be ints, got {tup!r}") from None
    try:
        return _offsets_cached(*key, n, K, argname)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def _all_ints(tup):
    return all(isinstance(o, (int, np.integer)) and not isinstance(o, (bool, np.bool_)) for o in tup)


def offsets_problem(tup, n=None, K=None, argname="L"):
    """What is wrong with the offsets ``tup`` (a tuple) of a factor with n columns and K diagonals, or None.
    Plain Python on the sizes, so that a tracer (torch.compile) runs it on symbolic ones."""
    if not _all_ints(tup):
        return f"offsets must be ints, got {tup!r}"
    if not tup:
        return "offsets must not be empty (offsets[0] == 0 is the main diagonal)"
    if tup[0] != 0:
        return f"offsets[0] must be 0 (the main diagonal), got {tup!r}"
    if any(b <= a for a, b in zip(tup, tup[1:])):
        return f"offsets must be strictly increasing, got {tup!r}"
    if K is not None and len(tup) != K:
        return f"{argname} holds K={K} diagonals (axis -2) but offsets has {len(tup)} entries {tup!r}"
    if n is not None and tup[-1] >= n:
        return f"offsets must be < n={n}, got largest offset {tup[-1]}"
    return None


@functools.lru_cache(maxsize=1024)
def _offsets_cached(tup, types, n, K, argname):
    if not _all_ints(tup):
        raise ValueError(f"offsets must be ints, got {tup!r}")
    tup = tuple(int(o) for o in tup)
    problem = offsets_problem(tup, n, K, argname)
    if problem is not None:
        raise ValueError(problem)
    arr = np.array(tup, dtype=np.int64)
    arr.setflags(write=False)
    return arr


def _finite(name, what, a, xp):
    """Raise if ``a`` holds NaN or inf: one summing pass (no temporary), exact test only if it fails."""
    if a.size == 0:
        return
    # Finite entries near the dtype's maximum (float32's 3.4e38) may sum to inf: NumPy's overflow warning
    # would then precede the caller's real error, and the exact test below already tells the two apart.
    with np.errstate(over="ignore", invalid="ignore"):
        total = a.sum()
    if not bool(xp.isfinite(total)) and not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name}: {what} contains NaN or inf")


def _shape(name, L, argname="L"):
    """Validate ``L`` as a band array (a factor, or the band matrix ``argname`` of band_cholesky); returns
    (K, n)."""
    float_array(f"{name} {argname}", L, 2)
    K, n = L.shape[-2:]
    if n < 1 or K < 1:
        raise ValueError(f"{name}: {argname} must have shape (*batch, K, n) with K, n >= 1, got {L.shape}")
    return K, n


def _factor(name, L, offsets, argname="L"):
    """Validate ``L`` (the argument called ``argname``) and ``offsets``; returns (offsets as an int64
    array, K, n)."""
    K, n = _shape(name, L, argname)
    return validate_offsets(name, offsets, n, K, argname), K, n


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


def _read(xp, a, shape):
    """``a`` as a kernel reads it: C-contiguous of ``shape`` (a view when it already is), and on the CPU a
    read-only view. Read-only is part of a Numba array type, so without this every kernel would be
    compiled twice, for writable inputs (NumPy, PyTorch) and for read-only ones (JAX's, broadcast views)."""
    a = contiguous(a).reshape(shape)  # (a copy by a kernel: a recorded step holds it, or is refused)
    if xp is np and a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def _to_canonical(xp, b, plan):
    """b as a C-contiguous (S, F, n) array: a view when b already has that layout, else one copy."""
    out, perm, _, S, F = plan
    n = b.shape[-1]
    if perm is None and b.shape[:-1] == out and b.flags.c_contiguous:
        return _read(xp, b, (S, F, n))
    b = xp.broadcast_to(b, out + (n,))
    if perm is not None:
        b = b.transpose(perm + (len(out),))
    return _read(xp, b, (S, F, n))


def _from_canonical(xp, y, plan):
    out, perm, inverse, _, _ = plan
    n = y.shape[-1]
    if perm is None:
        return y.reshape(out + (n,))
    y = y.reshape(tuple(out[a] for a in perm) + (n,))
    return contiguous(y.transpose(inverse + (len(out),)))


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
    Lc = _read(xp, L, (plan[4], K, n))
    bc = _to_canonical(xp, b, plan)
    y = xp.empty_like(bc)
    if y.size:
        flags = implementation(kernel, Lc, bc)(Lc, offs, bc, y)
        if check:
            _verdict(kernel, flags, L, offs, [(argname, b)])
    return _from_canonical(xp, y, plan)


def _weights(name, L, g, shape):
    """The VJP weights ``g`` (real numbers) as L's dtype, broadcast to ``shape``."""
    xp = array_module(L)
    g = real_array(f"{name} g", g, L.dtype, xp)
    try:
        return xp.broadcast_to(g, shape)
    except ValueError:
        raise ValueError(f"{name}: g of shape {g.shape} does not broadcast to {shape}") from None
