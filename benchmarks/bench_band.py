"""Banded-factor kernels versus the dense path, float32, on the chain, grid and extended-grid stencils.

    python benchmarks/bench_band.py            # d in {16, 64, 256, 1024}, batch in {100, 10000}
    python benchmarks/bench_band.py --quick    # shorter timing windows (one to two minutes)
    python benchmarks/bench_band.py --dims 256 --batches 100   # a subset

For each stencil, latent size d (an r x r lattice, d = r^2) and batch B (one factor per row, one sample):
  sample   x = L^{-T} eps            band_solve_t        dense: triangular solve with the dense factor
  logq     u = L^T z                 band_matvec_t       dense: batched matrix-vector product;
                                                         stencil: NumPy shifted slices, no dense matrix
  trace    tr((L L^T)^{-1})          band_trace_inv      dense: triangular inverse, squared Frobenius norm
and the vector-Jacobian products the tape runs for each (band: exactly what gvae.ops.band does;
dense: the same maths with dense matrices). Times are medians of repeats, in milliseconds per call for
the whole batch. The dense path is timed once per (d, B) on the chain factor (its cost does not depend
on the sparsity), on the first m factors with m sized so that one call takes about 0.15 s (0.03 s with
--quick) and its dense factors fit in 256 MiB, then scaled linearly to B (marked '*' where m < B).
ratio = best dense (the faster of SciPy/NumPy and PyTorch, if importable) / band. GB/s counts the bytes
each band kernel must move (factor, inputs, outputs), %bw compares it with the copy bandwidth measured
here. The machine may be shared: compare ratios within one run, not absolute times across runs.
"""
import contextlib
import math
import sys
import time

import numpy as np
import scipy.linalg

from gvae import kernels
from gvae.io.arguments import ArgumentParser
from gvae.kernels.cpu.threads import available_cores
from gvae.model import lattice

try:
    import torch
except ImportError:  # pragma: no cover - optional
    torch = None

DTYPE = np.float32


def timeit(fn, min_time, min_reps=3, max_reps=500):
    """Median seconds per call of fn() after one warm-up call (two calls in all for slow ones)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first > max(0.5, 10 * min_time):
        t0 = time.perf_counter()
        fn()
        return min(first, time.perf_counter() - t0)
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
    return {"chain": lattice.chain_offsets(), "grid": lattice.grid_offsets(r, r),
            "extgrid": lattice.extgrid_offsets(r, r)}[name]


def make_factor(rng, B, offsets, r):
    n = r * r
    K = len(offsets)
    L = (rng.uniform(-0.5, 0.5, size=(B, K, n)) / np.sqrt(K)).astype(DTYPE)
    L *= lattice.lattice_mask(offsets, r, r, dtype=DTYPE)
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
# dense timings (per (d, B), on a sub-batch sized to the time budget, scaled to B)
# ------------------------------------------------------------------------------------------------

def dense_times(L, offsets, B_full, min_time, budget):
    """{"numpy": {op: s}, "torch": {op: s}, "sub": {op: sub-batch}} for the batch B_full; each op is
    timed on the first m factors of L, m chosen so that one call takes about ``budget`` seconds."""
    rng = np.random.default_rng(2)
    B, K, n = L.shape
    D = dense(L, offsets)
    DT = np.ascontiguousarray(np.swapaxes(D, -1, -2))
    eps = rng.standard_normal((B, n)).astype(DTYPE)
    g = rng.standard_normal((B, n)).astype(DTYPE)
    trtri = scipy.linalg.lapack.get_lapack_funcs("trtri", (D,))

    def sp_sample(m):
        return lambda: [scipy.linalg.solve_triangular(D[i], eps[i], lower=True, trans="T", check_finite=False)
                        for i in range(m)]

    def sp_sample_vjp(m):
        def run():
            for i in range(m):
                x = scipy.linalg.solve_triangular(D[i], eps[i], lower=True, trans="T", check_finite=False)
                u = scipy.linalg.solve_triangular(D[i], g[i], lower=True, check_finite=False)
                np.tril(np.multiply.outer(-x, u))
        return run

    def sp_trace(m):
        return lambda: [np.sum(trtri(D[i], lower=1)[0] ** 2) for i in range(m)]

    def sp_trace_vjp(m):
        def run():
            for i in range(m):
                Li = trtri(D[i], lower=1)[0]
                np.tril(-2.0 * (Li.T @ (Li @ Li.T)))
        return run

    ops = {"numpy": {
        "sample": sp_sample, "sample_vjp": sp_sample_vjp,
        "logq": lambda m: lambda: np.matmul(DT[:m], eps[:m, :, None]),
        "logq_vjp": lambda m: lambda: (np.matmul(D[:m], g[:m, :, None]),
                                       np.tril(eps[:m, :, None] * g[:m, None, :])),
        "trace": sp_trace, "trace_vjp": sp_trace_vjp}}
    if torch is not None:
        tD, tDT = torch.from_numpy(D), torch.from_numpy(DT)
        te, tg = torch.from_numpy(eps)[..., None], torch.from_numpy(g)[..., None]
        eye = torch.eye(n, dtype=tD.dtype)

        def t_sample_vjp(m):
            def run():
                x = torch.linalg.solve_triangular(tDT[:m], te[:m], upper=True)
                u = torch.linalg.solve_triangular(tD[:m], tg[:m], upper=False)
                return torch.tril(-x * u.transpose(-1, -2)), u
            return run

        def t_trace_vjp(m):
            def run():
                Li = torch.linalg.solve_triangular(tD[:m], eye, upper=False)
                return torch.tril(-2.0 * (Li.transpose(-1, -2) @ (Li @ Li.transpose(-1, -2))))
            return run

        ops["torch"] = {
            "sample": lambda m: lambda: torch.linalg.solve_triangular(tDT[:m], te[:m], upper=True),
            "sample_vjp": t_sample_vjp,
            "logq": lambda m: lambda: torch.bmm(tDT[:m], te[:m]),
            "logq_vjp": lambda m: lambda: (torch.bmm(tD[:m], tg[:m]),
                                           torch.tril(te[:m] * tg[:m].transpose(-1, -2))),
            "trace": lambda m: lambda: (torch.linalg.solve_triangular(tD[:m], eye, upper=False)
                                        .square().sum((-1, -2))),
            "trace_vjp": t_trace_vjp}
    res = {"sub": {}}
    with torch.no_grad() if torch is not None else contextlib.nullcontext():
        for lib, table in ops.items():
            res[lib] = {}
            for op, make in table.items():
                m0 = min(B, 4)
                t1 = timeit(make(m0), 0.0, min_reps=1) / m0
                m = int(max(m0, min(B, budget / max(t1, 1e-9))))
                res[lib][op] = timeit(make(m), min_time) * B_full / m
                res["sub"][op] = min(res["sub"].get(op, B_full), m)
    return res


def main():
    ap = ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short timing windows (about a minute)")
    ap.add_argument("--dims", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--batches", type=int, nargs="+", default=[100, 10000])
    args = ap.parse_args()
    min_time = 0.02 if args.quick else 0.15
    budget = 0.03 if args.quick else 0.15  # seconds per dense call (sub-batch sized to it)
    t_start = time.perf_counter()

    rng = np.random.default_rng(0)
    for name in ("chain", "grid", "extgrid"):  # warm-up: load or compile every kernel
        offs = stencil(name, 4)
        Lw = make_factor(rng, 3, offs, 4)
        band_times(Lw, offs, 0.0)
    bw = copy_bandwidth(min_time)
    print(f"# float32; gvae threads {available_cores()} on a large call (one per available core); "
          f"torch {torch.__version__ + ' threads ' + str(torch.get_num_threads()) if torch else 'not installed'}")
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
            dn = dense_times(make_factor(rng, n_sub, offs_chain, r), offs_chain, B, min_time, budget)
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
                    m = "*" if dn["sub"][op] < B else " "
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
