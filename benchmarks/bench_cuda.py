"""GPU benchmark of gvae's banded-factor CUDA kernels (needs CuPy and a CUDA GPU; PyTorch CUDA optional).

    python benchmarks/bench_cuda.py                  # every stencil and size below, F in {100, 10000}
    python benchmarks/bench_cuda.py --quick          # shorter timing windows
    python benchmarks/bench_cuda.py --json out.json  # the rows as JSON too

For each stencil (the chain at d = 16, 256, 1024; the grid and the extended grid of Malago & Peste on the
4 x 4, 16 x 16, 32 x 32 and 28 x 28 lattices), F factors per call with S right-hand sides each, float32:
every band kernel (solves, products, log-det, trace and diag of Sigma = (L L^T)^{-1}, and the VJP
kernels band_outer, band_logdet_grad, band_trace_inv_grad, band_diag_inv_grad) timed on unchecked calls
(``check=False``, as the VJPs make them: no host round trip is timed). Each row gives the bytes the kernel
must move (each input read once, each output written once) over its time, as GB/s and as a share of
the device-to-device copy bandwidth measured first (cupy.copyto of 512 MiB, read + write).

Beside the solves and the trace, PyTorch CUDA's dense routes to the same numbers where the dense
factors fit in 2 GiB: ``torch.linalg.solve_triangular`` for x = L^{-T} b, and ``torch.cholesky_inverse``
then the diagonal for diag(Sigma) (a dense user's way to Sigma from the factor), as time ratios.

Every timing is the median over blocks of calls, each block ended by a stream synchronisation inside the
timed region, after a warm-up call (compilation, first allocation). Compare ratios within one run.
"""
import json
import sys
import time

import numpy as np

from gvae.io.arguments import ArgumentParser

CHAIN_SIDES = (16, 256, 1024)  # chain lengths d
LATTICES = ((4, 4), (16, 16), (32, 32), (28, 28))
DENSE_LIMIT = 2 * 1024**3  # bytes of dense factors PyTorch is given at most


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter timing windows")
    p.add_argument("--factors", type=int, nargs="+", default=[100, 10000], help="factors F per call")
    p.add_argument("--samples", type=int, default=1, help="right-hand sides S per factor")
    p.add_argument("--stencils", nargs="+", default=["chain", "grid", "extgrid"],
                   choices=["chain", "grid", "extgrid"])
    p.add_argument("--kernels", nargs="+", default=None, help="time only these kernels (default: all)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch dense rows")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.factors) < 1 or args.samples < 1:
        p.error("--factors and --samples must be >= 1")
    known = set(kernel_calls(*[None] * 7, *[1] * 5))  # the names only: no call is made
    unknown = sorted(set(args.kernels or ()) - known)
    if unknown:
        p.error(f"--kernels: unknown {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    return args


def gpu_timer(sync, min_time):
    """time(fn) -> median seconds per call over blocks of calls, each block synchronised inside."""
    def time_it(fn):
        fn()
        sync()  # compile and warm up outside the timed region
        t0 = time.perf_counter()
        fn()
        sync()
        once = max(time.perf_counter() - t0, 1e-7)
        per_block = max(1, min(1000, int(0.01 / once)))
        blocks = []
        start = time.perf_counter()
        while len(blocks) < 5 or (time.perf_counter() - start < min_time and len(blocks) < 100):
            t0 = time.perf_counter()
            for _ in range(per_block):
                fn()
            sync()
            blocks.append((time.perf_counter() - t0) / per_block)
        return float(np.median(blocks))
    return time_it


def copy_bandwidth(cupy, time_it):
    a = cupy.ones(512 * 1024**2 // 4, dtype=np.float32)
    b = cupy.empty_like(a)
    return 2 * a.nbytes / time_it(lambda: cupy.copyto(b, a)) / 1e9


def problems(args):
    """(stencil, shape label, n, offsets) for each stencil asked for."""
    from gvae.model import lattice
    out = []
    if "chain" in args.stencils:
        out += [("chain", f"{d}", d, lattice.chain_offsets()) for d in CHAIN_SIDES]
    for name, fn in (("grid", lattice.grid_offsets), ("extgrid", lattice.extgrid_offsets)):
        if name in args.stencils:
            out += [(name, f"{r}x{c}", r * c, fn(r, c)) for r, c in LATTICES]
    return out


def kernel_calls(kernels, L, offs, b, c, g, gn, F, S, K, n, item):
    """{kernel: (call, bytes it must move)} for one problem."""
    fac, vec, per_f = F * K * n * item, S * F * n * item, F * item
    return {
        "band_solve_t": (lambda: kernels.band_solve_t(L, offs, b, check=False), fac + 2 * vec),
        "band_solve": (lambda: kernels.band_solve(L, offs, b, check=False), fac + 2 * vec),
        "band_matvec_t": (lambda: kernels.band_matvec_t(L, offs, b, check=False), fac + 2 * vec),
        "band_matvec": (lambda: kernels.band_matvec(L, offs, b, check=False), fac + 2 * vec),
        "band_outer": (lambda: kernels.band_outer(b, c, offs, (F,)), 2 * vec + fac),
        "band_logdet": (lambda: kernels.band_logdet(L, check=False), F * n * item + per_f),
        "band_logdet_grad": (lambda: kernels.band_logdet_grad(L, g, check=False), F * n * item + per_f + fac),
        "band_trace_inv": (lambda: kernels.band_trace_inv(L, offs, check=False), fac + per_f),
        "band_diag_inv": (lambda: kernels.band_diag_inv(L, offs, check=False), fac + F * n * item),
        "band_trace_inv_grad": (lambda: kernels.band_trace_inv_grad(L, offs, g, check=False), 2 * fac + per_f),
        "band_diag_inv_grad": (lambda: kernels.band_diag_inv_grad(L, offs, gn, check=False),
                               2 * fac + F * n * item),
    }


def dense_factor(torch, L_host, offs):
    """The dense lower-triangular factors (F, n, n) of the band rows L (F, K, n) on the GPU:
    L[f, k, i] = L_{i, i - offs[k]}."""
    F, K, n = L_host.shape
    D = np.zeros((F, n, n), dtype=L_host.dtype)
    i = np.arange(n)
    for k, o in enumerate(offs):
        rows = i[i - o >= 0]
        D[:, rows, rows - o] = L_host[:, k, rows]
    return torch.from_numpy(D).cuda()


def torch_rows(torch, L_host, offs, b_host, time_it):
    """{label: seconds} of PyTorch CUDA's dense routes, or {} where the dense factors do not fit."""
    F, K, n = L_host.shape
    if F * n * n * L_host.itemsize > DENSE_LIMIT:
        return {}
    D = dense_factor(torch, L_host, offs)
    rhs = torch.from_numpy(np.ascontiguousarray(np.moveaxis(b_host, 0, -1))).cuda()  # (F, n, S)
    sync = torch.cuda.synchronize
    return {
        "band_solve_t": time_it(lambda: torch.linalg.solve_triangular(D.mT, rhs, upper=True), sync),
        "band_diag_inv": time_it(lambda: torch.cholesky_inverse(D).diagonal(dim1=-2, dim2=-1), sync),
    }


def main(args):
    from gvae.kernels import device_module
    try:
        cupy = device_module("cuda")  # CuPy reaching a GPU, or a RuntimeError saying what is missing
    except RuntimeError as exc:
        print(f"bench_cuda: {exc}")
        return 1
    from gvae import kernels

    torch, note = None, "PyTorch rows skipped (--no-torch)" if args.no_torch else None
    if not args.no_torch:
        try:
            import torch as _torch
            torch = _torch if _torch.cuda.is_available() else None
            note = None if torch is not None else "PyTorch rows skipped: torch sees no CUDA device"
        except ImportError as exc:
            note = f"PyTorch rows skipped: {exc}"

    window = 0.1 if args.quick else 0.5
    stream_sync = cupy.cuda.get_current_stream().synchronize
    time_it = gpu_timer(stream_sync, window)
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    bw = copy_bandwidth(cupy, time_it)
    print(f"device: {name}; CuPy {cupy.__version__}; device-to-device copy {bw:.0f} GB/s (read + write)")
    print("band kernels, float32, unchecked calls; GB/s = bytes the kernel must move / time; "
          "'torch dense' = PyTorch's dense route / gvae's time")
    header = (f"{'stencil':<8} {'shape':>6} {'F':>6} {'S':>3} {'kernel':<20} {'time us':>10} {'GB/s':>8} "
              f"{'of copy':>8} {'torch dense':>12}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(args.seed)
    item, S, rows = 4, args.samples, []
    for stencil, shape, n, offs in problems(args):
        K = len(offs)
        for F in args.factors:
            L_host = rng.uniform(-0.2, 0.2, (F, K, n)).astype(np.float32)
            L_host[:, 0] = rng.uniform(0.5, 2.0, (F, n))
            b_host = rng.standard_normal((S, F, n)).astype(np.float32)
            L, b = cupy.asarray(L_host), cupy.asarray(b_host)
            c = cupy.asarray(rng.standard_normal((S, F, n)).astype(np.float32))
            g = cupy.asarray(rng.standard_normal(F).astype(np.float32))
            gn = cupy.asarray(rng.standard_normal((F, n)).astype(np.float32))
            dense = {}
            if torch is not None:
                dense = torch_rows(torch, L_host, offs, b_host,
                                   lambda fn, sync: gpu_timer(sync, window)(fn))
            for kname, (fn, nbytes) in kernel_calls(kernels, L, offs, b, c, g, gn, F, S, K, n, item).items():
                if args.kernels and kname not in args.kernels:
                    continue
                seconds = time_it(fn)
                gbs = nbytes / seconds / 1e9
                ratio = dense[kname] / seconds if kname in dense else None
                rows.append({"stencil": stencil, "shape": shape, "n": n, "F": F, "S": S, "kernel": kname,
                             "seconds": seconds, "GB/s": gbs, "of_copy": gbs / bw, "torch_dense_over_gvae": ratio})
                shown = f"{ratio:>11.1f}x" if ratio is not None else f"{'':>12}"
                print(f"{stencil:<8} {shape:>6} {F:>6} {S:>3} {kname:<20} {seconds * 1e6:>10.1f} {gbs:>8.1f} "
                      f"{gbs / bw:>8.1%} {shown}", flush=True)
            del L, b, c, g, gn
            cupy.get_default_memory_pool().free_all_blocks()
    if note:
        print(f"note: {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "cupy": cupy.__version__, "copy_GBps": bw, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
