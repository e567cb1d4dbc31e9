"""Numba CPU kernels: the exact diagonal and trace of Sigma = (L L^T)^{-1} for banded factors, and their
gradients, from one recursion: the forward sweep yields every Sigma_ii (the trace is their sum), and its
reverse mode takes an adjoint per Sigma_ii (the trace's gradient gives all of them the same g).

The chain's diagonal follows an O(n) recursion of its own (below); a band that fills most of its matrix
takes the dense inverse (:mod:`dense_inverse_cpu`); every other band runs the selected inversion on
lock-step blocks of factors (:mod:`selected_inversion_cpu`). This file holds the chain's recursion, the
choice between them, and the kernels' drivers."""
import numpy as np

from ..backend import register
from ..cpu.entries import INT, Entry, array
from ..cpu.jit import jit
from ..cpu.specialise import template, variants
from . import dense_inverse_cpu
from .common_cpu import _FMA, _TB, _checksum, _flags, _u
from .driver_cpu import _PARALLEL_MIN, driver
from .selected_inversion_cpu import _grad_blocks_x1, _grad_blocks_x8, _grad_wide, _segment_rows, _window_blocks_x8


# For the chain the diagonal alone satisfies
#   s_i = a_i + c_i s_{i+1},  a_i = 1 / L_ii^2,  c_i = a_i L_{i+1, i}^2,
# computed per factor (an O(n) recursion whose coefficients are vectorised over i).

@jit(fastmath=_FMA, error_model="numpy")
def _chain_coefs(Lf, a, cc):
    """a_i = 1 / L_ii^2 and c_i = a_i L_{i+1, i}^2 (float64), vectorised."""
    n = Lf.shape[1]
    d = Lf[0]
    l1 = Lf[1, 1:]
    for i in range(n):
        r = 1.0 / np.float64(d[i])
        a[i] = r * r
    for i in range(n - 1):
        v = np.float64(l1[i])
        cc[i] = a[i] * v * v


@jit(fastmath=_FMA, error_model="numpy")
def _diag_chain(Lf, buf, s):
    """s[i] = Sigma_ii of one chain factor (s: a row of n, any float dtype); returns their sum, the trace
    (the store rides in the shadow of the recursion's serial FMA)."""
    n = Lf.shape[1]
    a = buf[0]
    cc = buf[1]
    _chain_coefs(Lf, a, cc)
    v = a[n - 1]
    s[n - 1] = v
    tr = v
    for i in range(n - 2, -1, -1):
        ui = _u(i)
        v = a[ui] + cc[ui] * v
        s[ui] = v
        tr += v
    return tr



@jit(fastmath=_FMA, error_model="numpy")
def _chain_grad(Lf, g, buf, gf):
    """gf = d(sum_i g_i s_i)/dL_f by reverse mode through s_i = a_i + c_i s_{i+1}; g has n entries, or
    one for all (the trace's gradient)."""
    n = Lf.shape[1]
    a = buf[0]
    cc = buf[1]
    s = buf[2]
    _chain_coefs(Lf, a, cc)
    acc = a[n - 1]
    s[n - 1] = acc
    for i in range(n - 2, -1, -1):
        ui = _u(i)
        acc = a[ui] + cc[ui] * acc
        s[ui] = acc
    # sb_i = g_i + sb_{i-1} c_{i-1};  ds_i/dL_ii = -2 s_i / L_ii;  ds_i/dL_{i+1,i} = 2 a_i L_{i+1,i} s_{i+1}
    gi = 1 if g.shape[0] > 1 else 0  # g's stride over i
    d = Lf[0]
    l1 = Lf[1, 1:]
    g0 = gf[0]
    g1 = gf[1, 1:]
    s1 = s[1:]
    gf[1, 0] = 0.0
    sb = np.float64(g[0])
    for i in range(n - 1):
        gn = np.float64(g[(i + 1) * gi])  # read before the stores to gf, which might alias g
        g0[i] = -2.0 * sb * s[i] / np.float64(d[i])
        g1[i] = 2.0 * sb * a[i] * np.float64(l1[i]) * s1[i]
        sb = gn + sb * cc[i]
    g0[n - 1] = -2.0 * sb * s[n - 1] / np.float64(d[n - 1])



@jit
def _chain(offs):
    return offs.shape[0] == 2 and offs[1] == 1


@template(fastmath=_FMA, error_model="numpy")
def _sigma_factors(L, offs, out, lo, hi):
    """out[f] = diag(Sigma_f), out (F, n), or out[f, 0] = tr(Sigma_f), out (F, 1), for f in lo .. hi-1:
    one compiled kernel for both. Compiled for the chain (_CHAIN) and for every other band, so that a
    process whose bands are chains compiles no selected inversion."""
    F, K, n = L.shape
    chk = 0.0
    if _CHAIN:
        buf = np.empty((3, n))
        diag = out.shape[1] > 1
        for f in range(lo, hi):
            if diag:
                chk += _diag_chain(L[f], buf, out[f])
            else:
                v = _diag_chain(L[f], buf, buf[2])
                out[f, 0] = v
                chk += v
    else:
        chk = _window_blocks_x8(L, offs, out, lo, hi)
    return _flags(L, lo, hi, chk)


@template(fastmath=_FMA, error_model="numpy")
def _grad_factors(L, offs, g, out, lo, hi):
    """out[lo:hi] = d(sum_i g_i Sigma_ii)/dL; g (F, n), or (F, 1): one g per factor, the trace. Compiled
    for the chain (_CHAIN), and for other bands on blocks of _TB lanes and on one (_WIDE), so that a
    process compiles the one-lane sweep only when a band past the memory budget asks for it, and the
    selected inversion only for a band that is not a chain."""
    F, K, n = L.shape
    if _CHAIN:
        buf = np.empty((3, n))
        for f in range(lo, hi):
            _chain_grad(L[f], g[f], buf, out[f])
    elif _WIDE:
        _grad_blocks_x8(L, offs, g, out, lo, hi, n)
    else:
        _grad_blocks_x1(L, offs, g, out, lo, hi, _segment_rows(n, offs[K - 1] + 1, 1))
    chk = 0.0
    for f in range(lo, hi):
        for k in range(K):
            chk += _checksum(out[f, k])
    return _flags(L, lo, hi, chk)


# The lock-step blocks of _TB lanes (not the chain) do more of their work, F n K (w + 1), per second than
# the per-pair loops that _PARALLEL_MIN was set for (by the speedups the plans below pass, measured); one
# lane is taken as on a par with them.
@jit
def _plan(L, offs, wide, speedup):
    """Factors, one at a time for the chain and on one lane, else in blocks of _TB (``speedup``: how much
    more of the counted work a blocked recursion does per second than the per-item loops)."""
    F, K, n = L.shape
    work = F * n * K * (offs[K - 1] + 1)
    if _chain(offs) or not wide:
        return F, 1, work, _PARALLEL_MIN
    return F, _TB, work // speedup, _PARALLEL_MIN


@jit
def _forward_plan(L, offs, out):
    return _plan(L, offs, True, 8)


@jit
def _wide_grad_plan(L, offs, g, out):
    return _plan(L, offs, True, 2)


@jit
def _narrow_grad_plan(L, offs, g, out):
    return _plan(L, offs, False, 2)


def _grad_entry(kernel):
    return Entry(kernel, results=2, L=array("F", "K", "n"), offs=array("K", dtype=np.int64), g=array("F", "m"),
                 out=array("F", "K", "n"), lo=INT, hi=INT)


def _sigma_entry(kernel):
    return Entry(kernel, results=2, L=array("F", "K", "n"), offs=array("K", dtype=np.int64), out=array("F", "m"),
                 lo=INT, hi=INT)


# A chunk runs as a C entry (on a worker, and in a recorded training step).
_sigma_chain = driver(_forward_plan, _sigma_entry(variants((_sigma_factors,), "_chain", _CHAIN=True)[0]))
_sigma_band = driver(_forward_plan, _sigma_entry(variants((_sigma_factors,), "", _CHAIN=False)[0]))
_sigma_grad_chain = driver(_narrow_grad_plan, _grad_entry(variants((_grad_factors,), "_chain", _CHAIN=True,
                                                                   _WIDE=False)[0]))
_sigma_grad_wide = driver(_wide_grad_plan, _grad_entry(variants((_grad_factors,), "_wide", _CHAIN=False,
                                                                _WIDE=True)[0]))
_sigma_grad_narrow = driver(_narrow_grad_plan, _grad_entry(variants((_grad_factors,), "_narrow", _CHAIN=False,
                                                                    _WIDE=False)[0]))


def _sigma_any(L, offs, out, kept=None):
    """diag(Sigma) or tr(Sigma) into out: by the dense inverse where it pays (:mod:`dense_inverse_cpu`), else
    by the chain's recursion or the selected inversion. ``kept`` (F, n, n) float64, given only where
    :func:`band_sigma_keeps_inverse` says so, receives each factor's inverse for the gradient."""
    found = dense_inverse_cpu.addresses(L, offs)
    if found is not None:
        return dense_inverse_cpu.sigma(L, offs, out, found, kept)
    return (_sigma_chain if _chain.py_func(offs) else _sigma_band)(L, offs, out)


def _sigma_grad(L, offs, g, out, kept=None):
    found = dense_inverse_cpu.addresses(L, offs)
    if found is not None:
        return dense_inverse_cpu.sigma_grad(L, offs, g, out, found, kept)
    if _chain.py_func(offs):
        return _sigma_grad_chain(L, offs, g, out)
    return (_sigma_grad_wide if _grad_wide(L, offs) else _sigma_grad_narrow)(L, offs, g, out)


@register("band_sigma_keeps_inverse")
def band_sigma_keeps_inverse(L, offs):
    """Whether the kernels below run on the dense inverse for this band (L (F, K, n)), so that the
    forward can keep each factor's inverse for the gradient (their ``kept``)."""
    return dense_inverse_cpu.addresses(L, offs) is not None


# The trace and the diagonal share their compiled kernels, and so do their gradients (the selected
# inversion is the longest compilation of gvae): the trace's arrays take a trailing axis of 1, as views.
@register("band_trace_inv")
def band_trace_inv(L, offs, out, kept=None):
    """out[f] = tr((L_f L_f^T)^{-1}), exactly, in O(n K w) (O(n) for the chain), float64 inside;
    L (F, K, n), out (F,); kept as :func:`_sigma_any`'s."""
    return _sigma_any(L, offs, out.reshape(-1, 1), kept)


@register("band_diag_inv")
def band_diag_inv(L, offs, out, kept=None):
    """out[f, i] = ((L_f L_f^T)^{-1})_ii, the same recursion; out (F, n)."""
    return _sigma_any(L, offs, out, kept)


@register("band_trace_inv_grad")
def band_trace_inv_grad(L, offs, g, out, kept=None):
    """out[f] = g[f] d tr((L_f L_f^T)^{-1}) / d L_f on the band (= -2 g (Sigma^2 L) restricted), zero in
    the slots that do not exist; L, out (F, K, n), g (F,); the inverses the forward kept, if it kept them."""
    return _sigma_grad(L, offs, g.reshape(-1, 1), out, kept)


@register("band_diag_inv_grad")
def band_diag_inv_grad(L, offs, g, out, kept=None):
    """out[f] = sum_i g[f, i] d ((L_f L_f^T)^{-1})_ii / d L_f on the band, zero in the slots that do not
    exist; L, out (F, K, n), g (F, n)."""
    return _sigma_grad(L, offs, g, out, kept)
