"""Banded-factor kernels versus the dense path, float32, on the chain, grid and extended-grid stencils.

    python examples/bench_band.py            # d in {16, 64, 256, 1024}, batch in {100, 10000}
    python examples/bench_band.py --quick    # shorter timing windows (about a minute)

For each stencil, latent size d (an r x r lattice, d = r^2) and batch B (one factor per row, one sample):
  sample   x = L^{-T} eps            band_solve_t        dense: triangular solve with the dense factor
  logq     u = L^T z                 band_matvec_t       dense: batched matrix-vector product;
                                                         stencil: NumPy shifted slices, no dense matrix
  trace    tr((L L^T)^{-1})          band_trace_inv      dense: triangular inverse, squared Frobenius norm
and the vector-Jacobian products the tape runs for each (band: exactly what gvae.ops.band does;
dense: the same maths with dense matrices). Times are medians of repeats, in milliseconds per call for
the whole batch. The dense path is timed once per (d, B) on the chain factor (its cost does not depend
on the sparsity), on a sub-batch where the full one would not fit or take too long, and scaled linearly
to B (marked '*'). "best dense" is the faster of SciPy/NumPy and PyTorch (if importable). GB/s counts the
bytes each band kernel must move (factor, inputs, outputs) against the copy bandwidth measured here.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gvae import kernels  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - optional
    torch = None

DTYPE = np.float32


def timeit(fn, min_time, min_reps=3, max_reps=500):
    """Median seconds per call of fn() after one warm-up call."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def copy_bandwidth(min_time):
    src = np.ones(2**25, dtype=np.float64)  # 256 MiB
    dst = np.empty_like(src)
    t = timeit(lambda: np.copyto(dst, src), min_time)
    return 2 * src.nbytes / t / 1e9


def stencil(name, r):
    return {"chain": kernels.chain_offsets(), "grid": kernels.grid_offsets(r, r),
            "extgrid": kernels.extgrid_offsets(r, r)}[name]


def make_factor(rng, B, offsets, r):
    n = r * r
    K = len(offsets)
    L = (rng.uniform(-0.5, 0.5, size=(B, K, n)) / np.sqrt(K)).astype(DTYPE)
    L *= kernels.lattice_mask(offsets, r, r, dtype=DTYPE)
    L[:, 0] = rng.uniform(0.5, 2.0, size=(B, n))
    return L


def dense(L, offsets):
    B, K, n = L.shape
    D = np.zeros((B, n, n), dtype=L.dtype)
    for k, o in enumerate(offsets):
        i = np.arange(o, n)
        D[:, i, i - o] = L[:, k, o:]
    return D


def stencil_matvec_t(L, offsets, x):
    """L^T x with shifted slices: no dense matrix, one temporary per diagonal."""
    y = L[:, 0] * x
    n = x.shape[-1]
    for k, o in enumerate(offsets[1:], 1):
        y[:, :n - o] += L[:, k, o:] * x[:, o:]
    return y


def stencil_matvec_t_vjp(L, offsets, x, g):
    gx = L[:, 0] * g
    gL = np.zeros_like(L)
    gL[:, 0] = x * g
    for k, o in enumerate(offsets[1:], 1):
        gx[:, o:] += L[:, k, o:] * g[:, :-o]
        gL[:, k, o:] = x[:, o:] * g[:, :-o]
    return gx, gL


# ------------------------------------------------------------------------------------------------
# band timings
# ------------------------------------------------------------------------------------------------

def band_times(L, offsets, min_time):
    rng = np.random.default_rng(1)
    B, K, n = L.shape
    eps = rng.standard_normal((B, n)).astype(DTYPE)
    g = rng.standard_normal((B, n)).astype(DTYPE)
    gt = np.ones(B, dtype=DTYPE)
    x = kernels.band_solve_t(L, offsets, eps)
    batch = L.shape[:-2]

    def solve_t_vjp():  # as gvae.ops.band_solve_t's VJP
        u = kernels.band_solve(L, offsets, g, check=False)
        return kernels.band_outer(x, u, offsets, batch, scale=-1.0), u

    def matvec_t_vjp():  # as gvae.ops.band_matvec_t's VJP
        return kernels.band_outer(eps, g, offsets, batch), kernels.band_matvec(L, offsets, g, check=False)

    t = {
        "sample": timeit(lambda: kernels.band_solve_t(L, offsets, eps), min_time),
        "sample_nocheck": timeit(lambda: kernels.band_solve_t(L, offsets, eps, check=False), min_time),
        "sample_vjp": timeit(solve_t_vjp, min_time),
        "logq": timeit(lambda: kernels.band_matvec_t(L, offsets, eps), min_time),
        "logq_vjp": timeit(matvec_t_vjp, min_time),
        "trace": timeit(lambda: kernels.band_trace_inv(L, offsets), min_time),
        "trace_vjp": timeit(lambda: kernels.band_trace_inv_grad(L, offsets, gt), min_time),
        "logq_stencil": timeit(lambda: stencil_matvec_t(L, offsets, eps), min_time),
        "logq_vjp_stencil": timeit(lambda: stencil_matvec_t_vjp(L, offsets, eps, g), min_time),
    }
    item = L.dtype.itemsize
    vec = B * n * item
    fac = B * K * n * item
    t["bytes"] = {"sample": fac + 2 * vec, "logq": fac + 2 * vec, "trace": fac,
                  "sample_vjp": 2 * fac + 5 * vec, "logq_vjp": 2 * fac + 5 * vec, "trace_vjp": 2 * fac}
    return t


# ------------------------------------------------------------------------------------------------
# dense timings (per (d, B), on a sub-batch, scaled)
# ------------------------------------------------------------------------------------------------

def dense_times(L, offsets, B_full, min_time):
    rng = np.random.default_rng(2)
    B, K, n = L.shape
    D = dense(L, offsets)
    DT = np.ascontiguousarray(np.swapaxes(D, -1, -2))
    eps = rng.standard_normal((B, n)).astype(DTYPE)
    g = rng.standard_normal((B, n)).astype(DTYPE)
    # the trace is O(n^3) per factor: a smaller sub-batch still
    Bt = max(2, min(B, int(4e9 // n**3)))
    res = {}

    # SciPy / NumPy
    def sp_sample():
        return [scipy.linalg.solve_triangular(D[i], eps[i], lower=True, trans="T", check_finite=False)
                for i in range(B)]

    def sp_sample_vjp():
        out = []
        for i in range(B):
            x = scipy.linalg.solve_triangular(D[i], eps[i], lower=True, trans="T", check_finite=False)
            u = scipy.linalg.solve_triangular(D[i], g[i], lower=True, check_finite=False)
            out.append(np.tril(np.multiply.outer(-x, u)))
        return out

    trtri = scipy.linalg.lapack.get_lapack_funcs("trtri", (D,))

    def sp_trace():
        return [np.sum(trtri(D[i], lower=1)[0] ** 2) for i in range(Bt)]

    def sp_trace_vjp():
        out = []
        for i in range(Bt):
            Li = trtri(D[i], lower=1)[0]
            out.append(np.tril(-2.0 * (Li.T @ (Li @ Li.T))))
        return out

    res["numpy"] = {
        "sample": timeit(sp_sample, min_time) * B_full / B,
        "sample_vjp": timeit(sp_sample_vjp, min_time) * B_full / B,
        "logq": timeit(lambda: np.matmul(DT, eps[..., None]), min_time) * B_full / B,
        "logq_vjp": timeit(lambda: (np.matmul(D, g[..., None]),
                                    np.tril(eps[:, :, None] * g[:, None, :])), min_time) * B_full / B,
        "trace": timeit(sp_trace, min_time) * B_full / Bt,
        "trace_vjp": timeit(sp_trace_vjp, min_time) * B_full / Bt,
    }
    if torch is not None:
        tD, tDT = torch.from_numpy(D), torch.from_numpy(DT)
        te, tg = torch.from_numpy(eps)[..., None], torch.from_numpy(g)[..., None]
        eye = torch.eye(n, dtype=tD.dtype)
        tDs = tD[:Bt].contiguous()

        def t_sample_vjp():
            x = torch.linalg.solve_triangular(tDT, te, upper=True)
            u = torch.linalg.solve_triangular(tD, tg, upper=False)
            return torch.tril(-x * u.transpose(-1, -2)), u

        def t_trace_vjp():
            Li = torch.linalg.solve_triangular(tDs, eye, upper=False)
            return torch.tril(-2.0 * (Li.transpose(-1, -2) @ (Li @ Li.transpose(-1, -2))))

        with torch.no_grad():
            res["torch"] = {
                "sample": timeit(lambda: torch.linalg.solve_triangular(tDT, te, upper=True), min_time)
                * B_full / B,
                "sample_vjp": timeit(t_sample_vjp, min_time) * B_full / B,
                "logq": timeit(lambda: torch.bmm(tDT, te), min_time) * B_full / B,
                "logq_vjp": timeit(lambda: (torch.bmm(tD, tg), torch.tril(te * tg.transpose(-1, -2))),
                                   min_time) * B_full / B,
                "trace": timeit(lambda: torch.linalg.solve_triangular(tDs, eye, upper=False).square()
                                .sum((-1, -2)), min_time) * B_full / Bt,
                "trace_vjp": timeit(t_trace_vjp, min_time) * B_full / Bt,
            }
    res["sub"] = (B, Bt)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short timing windows (about a minute)")
    ap.add_argument("--dims", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--batches", type=int, nargs="+", default=[100, 10000])
    args = ap.parse_args()
    min_time = 0.02 if args.quick else 0.15
    t_start = time.perf_counter()

    import numba
    rng = np.random.default_rng(0)
    for name in ("chain", "grid", "extgrid"):  # warm-up: load or compile every kernel
        offs = stencil(name, 4)
        Lw = make_factor(rng, 3, offs, 4)
        band_times(Lw, offs, 0.0)
    bw = copy_bandwidth(min_time)
    print(f"# float32; numba threads {numba.get_num_threads()}; torch "
          f"{torch.__version__ + ' threads ' + str(torch.get_num_threads()) if torch else 'not installed'}")
    print(f"# copy bandwidth (np.copyto, 256 MiB, read + write): {bw:.1f} GB/s")
    print("# ms per call for the whole batch; ratio = best dense / band; * = dense timed on a sub-batch "
          "and scaled")
    print("# band_check: the sampling call with its argument scans (NaN/inf, diagonal) vs check=False")
    header = (f"{'stencil':8} {'d':>5} {'B':>6} {'op':11} {'band ms':>9} {'GB/s':>6} {'%bw':>4} "
              f"{'numpy ms':>10} {'torch ms':>10} {'ratio':>8} {'stencil ms':>10} {'st/band':>7}")
    print(header)
    print("-" * len(header))
    for d in args.dims:
        r = int(round(math.sqrt(d)))
        assert r * r == d, "d must be a square (r x r lattice)"
        for B in args.batches:
            n_sub = max(2, min(B, int(2**28 // (d * d * 4))))
            offs_chain = stencil("chain", r)
            dn = dense_times(make_factor(rng, n_sub, offs_chain, r), offs_chain, B, min_time)
            mark = "*" if dn["sub"][0] < B else " "
            mark_t = "*" if dn["sub"][1] < B else " "
            for name in ("chain", "grid", "extgrid"):
                offs = stencil(name, r)
                L = make_factor(rng, B, offs, r)
                bt = band_times(L, offs, min_time)
                for op in ("sample", "sample_vjp", "logq", "logq_vjp", "trace", "trace_vjp"):
                    tb = bt[op]
                    gbs = bt["bytes"][op] / tb / 1e9
                    tn = dn["numpy"][op]
                    tt = dn["torch"][op] if "torch" in dn else float("nan")
                    best = min(tn, tt) if "torch" in dn else tn
                    m = mark_t if op.startswith("trace") else mark
                    st = bt.get(op + "_stencil") if op.startswith("logq") else None
                    st_s = f"{st * 1e3:10.3f} {st / tb:7.2f}" if st else f"{'':10} {'':7}"
                    print(f"{name:8} {d:5d} {B:6d} {op:11} {tb * 1e3:9.3f} {gbs:6.1f} {100 * gbs / bw:4.0f} "
                          f"{tn * 1e3:9.2f}{m} {tt * 1e3:9.2f}{m} {best / tb:8.0f} {st_s}")
                print(f"{name:8} {d:5d} {B:6d} {'band_check':11} {bt['sample'] * 1e3:9.3f} vs check=False "
                      f"{bt['sample_nocheck'] * 1e3:.3f} ms")
            sys.stdout.flush()
    print(f"# total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
