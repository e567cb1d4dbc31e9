"""The selected inversion's results for wide bands by the dense inverse: diag(Sigma), tr(Sigma) and their
gradients from M = L^{-1}, with Sigma = (L L^T)^{-1} = M^T M (Numba kernels calling LAPACK and the BLAS).

The selected inversion (:mod:`selected_inversion_cpu`) costs O(n K w) in scalar loops. Where the band fills
most of the matrix (the full family: K = n) that is O(n^3) at a few flops a cycle, while LAPACK's triangular
inverse and the BLAS's triangular products do the same O(n^3) blocked, many times faster. Per factor, in
float64 as the recursion:

  M = L^{-1}                                  (LAPACKE_dtrtri, n^3 / 3 multiply-adds)
  Sigma_ii = sum_{r >= i} M_ri^2              (column norms of the lower-triangular M)
  d(sum_i g_i Sigma_ii)/dL = -2 Sigma diag(g) Sigma L = -2 M^T (M diag(g) M^T)   (Sigma L = M^T),

the last as two triangular products (cblas_dtrmm, n^3 each), read on the band's slots. Scratch: two n x n
float64 per chunk of factors. The trace's gradient is the case g_i = g for all i. The forward may keep
each M in an (F, n, n) float64 array the caller passes (``kept``), and the gradient then reads M from it
instead of inverting L again (a singular factor's M is kept as NaN).

Where this route is taken (:func:`addresses`): from ``N_MIN`` to ``N_MAX`` columns, bands with K (w + 1) >= n max(n, 64)
/ 4, that is at least a quarter of the matrix's n^2 entries (half of them at n = 32, a third at 48), when
NumPy's OpenBLAS offers both routines (else, and on CUDA, the selected inversion). The results agree with
the recursion's to rounding, not bit for bit."""
import numpy as np

from ..cpu import blas
from ..cpu.entries import INT, Entry, array
from ..cpu.jit import jit
from ..cpu.triangular_calls import COL_MAJOR, LEFT, LOWER, RIGHT, ROW_MAJOR, TRANS, call_trmm, call_trtri
from .common_cpu import _FMA, _checksum, _flags
from .driver_cpu import _PARALLEL_MIN, driver

# The route's bounds, measured against the selected inversion (docs/notes/2026-11-performance-step.md, "Wide
# bands by the dense inverse"): below them the recursion is as fast or faster.
N_MIN = 32
FILL = 4
# Its two n x n float64 per thread stay within the selected inversion's scratch budget of 256 MiB a thread
# (trace.py): past this n the recursion, which keeps its band in segments, runs instead.
N_MAX = 4096


def addresses(L, offs):
    """(trtri, trmm) addresses when the dense route serves this band (L (F, K, n), offs int64), else None."""
    F, K, n = L.shape
    if not N_MIN <= n <= N_MAX or n * max(n, 64) > FILL * K * (int(offs[K - 1]) + 1):
        return None
    return blas.triangular_addresses()


@jit(error_model="numpy")
def _inverse(L, offs, f, M, trtri):
    """M (n, n) float64 = L_f^{-1}, lower triangular, zero above; returns LAPACK's info. A C-ordered lower
    triangle is the upper triangle of the same memory read in Fortran order."""
    K, n = L.shape[1], L.shape[2]
    M[:, :] = 0.0
    for k in range(K):
        o = offs[k]
        for i in range(o, n):
            M[i, i - o] = L[f, k, i]
    return call_trtri(trtri, COL_MAJOR, ord("U"), n, M.ctypes.data, n)


@jit(fastmath=_FMA, error_model="numpy")
def _sigma_factors(L, offs, out, trtri, kept, lo, hi):
    """out[f] = diag(Sigma_f), out (F, n), or out[f, 0] = tr(Sigma_f), out (F, 1), for f in lo .. hi-1;
    M_f kept in kept[f] where kept (F, n, n) is not empty."""
    n = L.shape[2]
    scratch = np.empty((n, n))
    s = np.empty(n)
    diag = out.shape[1] > 1
    keep = kept.shape[0] > 0
    chk = 0.0
    for f in range(lo, hi):
        M = kept[f] if keep else scratch
        s[:] = 0.0
        if _inverse(L, offs, f, M, trtri) != 0:
            s[:] = np.nan
            M[:, :] = np.nan
        for r in range(n):
            for c in range(r + 1):
                s[c] += M[r, c] * M[r, c]
        if diag:
            for i in range(n):
                out[f, i] = s[i]
        else:
            out[f, 0] = s.sum()
        chk += _checksum(out[f])
    return _flags(L, lo, hi, chk)


@jit(fastmath=_FMA, error_model="numpy")
def _grad_factors(L, offs, g, out, trtri, trmm, kept, lo, hi):
    """out[f] = d(sum_i g[f, i] Sigma_ii)/dL_f on the band, zero in the slots that do not exist; g (F, n),
    or (F, 1) for one g per factor (the trace's); M_f read from kept[f] where kept (F, n, n) is not empty
    (NaN there spreads to the factor's gradient), else L_f inverted again."""
    F, K, n = L.shape
    scratch = np.empty((n, n))
    P = np.empty((n, n))
    per_row = g.shape[1] > 1
    reuse = kept.shape[0] > 0
    chk = 0.0
    for f in range(lo, hi):
        M = kept[f] if reuse else scratch
        failed = False if reuse else _inverse(L, offs, f, M, trtri) != 0
        # P = M diag(g), zero above the diagonal. What P holds there never reaches the gradient's lower
        # triangle in exact arithmetic, but the BLAS multiplies blocks with their zeros, and NaN left there
        # (by a singular factor before) would spread through them.
        for r in range(n):
            for c in range(r + 1):
                P[r, c] = M[r, c] * np.float64(g[f, c if per_row else 0])
            for c in range(r + 1, n):
                P[r, c] = 0.0
        call_trmm(trmm, ROW_MAJOR, RIGHT, LOWER, TRANS, n, n, 1.0, M.ctypes.data, n, P.ctypes.data, n)
        call_trmm(trmm, ROW_MAJOR, LEFT, LOWER, TRANS, n, n, -2.0, M.ctypes.data, n, P.ctypes.data, n)
        if failed:
            P[:, :] = np.nan
        for k in range(K):
            o = offs[k]
            for i in range(o):
                out[f, k, i] = 0.0
            for i in range(o, n):
                out[f, k, i] = P[i, i - o]
            chk += _checksum(out[f, k])
    return _flags(L, lo, hi, chk)


@jit
def _sigma_plan(L, offs, out, trtri, kept):
    F, K, n = L.shape
    return F, 1, F * n * n * n, _PARALLEL_MIN


@jit
def _grad_plan(L, offs, g, out, trtri, trmm, kept):
    F, K, n = L.shape
    return F, 1, F * n * n * n, _PARALLEL_MIN


# A chunk runs as a C entry (on a worker, and in a recorded training step); kept is (0, 0, 0) when unused.
_FACTORS = dict(L=array("F", "K", "n"), offs=array("K", dtype=np.int64))
_KEPT = array("kf", "kr", "kc", dtype=np.float64)
_sigma = driver(_sigma_plan, Entry(_sigma_factors, results=2, **_FACTORS, out=array("F", "m"), trtri=INT,
                                   kept=_KEPT, lo=INT, hi=INT))
_grad = driver(_grad_plan, Entry(_grad_factors, results=2, **_FACTORS, g=array("F", "m"), out=array("F", "K", "n"),
                                 trtri=INT, trmm=INT, kept=_KEPT, lo=INT, hi=INT))


# "Nothing kept": the kernels' kept argument when the caller passes none (one compiled signature for both).
_NOTHING = np.empty((0, 0, 0))


def sigma(L, offs, out, found, kept=None):
    """The chunked, threaded :func:`_sigma_factors` with ``found`` = :func:`addresses`'s, each M_f kept in
    ``kept`` (F, n, n) float64 when given; (bad, checksum)."""
    with blas.one_thread():
        return _sigma(L, offs, out, found[0], _NOTHING if kept is None else kept)


def sigma_grad(L, offs, g, out, found, kept=None):
    """The chunked, threaded :func:`_grad_factors`, M read from ``kept`` when given; (bad, checksum)."""
    with blas.one_thread():
        return _grad(L, offs, g, out, found[0], found[1], _NOTHING if kept is None else kept)
