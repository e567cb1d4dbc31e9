"""The float32 matrix products of a 784-500-500-16 VAE step (batch 100; IWAE k = 5 decoder rows 500) on
each BLAS at hand: how gvae chose its products (docs/notes/2026-11-performance-kernels.md). With ``--products eval``, the three
products of one decoder pass of ``gvae eval`` instead (12,100 rows: 121 samples of 100 images, what the
default 256 MiB bound allows), and the importance samples per second they alone would allow: the ceiling
of evaluation throughput on this machine.

    python benchmarks/bench_gemm.py                          # gvae and NumPy's OpenBLAS
    python benchmarks/bench_gemm.py --libs openblas blis mkl torch jax gvae
    python benchmarks/bench_gemm.py --products eval --threads 2

Rows: ``openblas`` NumPy's matmul, one BLAS thread; ``gvae`` gvae's ``kernels.matmul`` on ``--threads``
threads (row or column blocks, one BLAS thread each); ``blis`` the ``blis`` wheel (``blis.py.gemm``);
``mkl`` the ``mkl`` wheel's ``cblas_sgemm`` through ctypes, one thread; ``torch`` ``torch.mm`` on
``--threads`` threads; ``jax`` a jitted product (XLA uses every core it is given: pin the process with
``taskset -c 0`` for one). A library that is not installed is skipped with a line saying so. Each
product's median time over ``--repeat`` calls after 10 warm-up calls, and its GFLOP/s. Every result is
checked against NumPy's before it is timed. Run it on a quiet machine.
"""
import ctypes
import glob
import os
import sys
import time

from gvae.io.arguments import ArgumentParser

# NumPy's OpenBLAS on one thread: the openblas row is the speed of one core, and gvae splits its products
# itself (set before NumPy loads the library).
os.environ["OPENBLAS_NUM_THREADS"] = "1"
import numpy as np  # noqa: E402

from cpu_model import blas_kernels, cpu_model  # noqa: E402  (benchmarks/cpu_model.py, beside this script)

# (name, M, K, N, a transposed, b transposed): out (M, N) = op(a) (M, K) @ op(b) (K, N)
SHAPES = [("enc L0 forward x @ W", 100, 784, 500, False, False),
          ("enc L1 forward", 100, 500, 500, False, False),
          ("dec L2 forward", 100, 500, 784, False, False),
          ("dec L2 dx = g @ W.T", 100, 784, 500, False, True),
          ("dec L2 dW = h.T @ g", 500, 100, 784, True, False),
          ("enc L0 dW = x.T @ g", 784, 100, 500, True, False),
          ("iw5 dec L2 forward", 500, 500, 784, False, False),
          ("iw5 dec L2 dx", 500, 784, 500, False, True),
          ("iw5 dec L2 dW", 500, 500, 784, True, False),
          ("iw5 dec L1 forward", 500, 500, 500, False, False)]


def eval_shapes(batch=100, memory_mb=256):
    """The decoder products of one pass of ``gvae eval`` at its defaults: as many samples of a batch of
    test images as gvae's memory bound allows (:func:`gvae.evaluation.evaluate.sample_chunk`)."""
    from gvae.model import VAE
    from gvae.evaluation.evaluate import sample_chunk
    rows = batch * sample_chunk(VAE(784, 16, [500, 500], "elu"), batch, memory_mb * 2 ** 20)
    return [("eval dec L0 forward", rows, 16, 500, False, False),
            ("eval dec L1 forward", rows, 500, 500, False, False),
            ("eval dec L2 forward", rows, 500, 784, False, False)]


def median_seconds(f, repeat):
    for _ in range(10):
        f()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _mkl_sgemm():
    """out = op(a) @ op(b) by MKL's cblas_sgemm on one thread (row-major)."""
    libs = glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*"))
    if not libs:
        raise ImportError("no libmkl_rt in this environment (pip install mkl)")
    lib = ctypes.CDLL(libs[0])
    lib.MKL_Set_Num_Threads(1)
    f = lib.cblas_sgemm
    f.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                       ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
    row_major, plain, transposed = 101, 111, 112

    def gemm(a, b, out, ta, tb):
        m, n = out.shape
        k = a.shape[0] if ta else a.shape[1]
        f(row_major, transposed if ta else plain, transposed if tb else plain, m, n, k, 1.0, a.ctypes.data,
          a.shape[1], b.ctypes.data, b.shape[1], 0.0, out.ctypes.data, n)
    return gemm


def gvae_plan(lib, a, b, ta, tb):
    """For the gvae row: how gvae computed the product ("  rows x2": NumPy's matmul on two blocks of rows
    on gvae's threads; gvae.kernels.matmul_cpu.plan: this machine's measured plan where tuning is on, else
    the hand-made rule), else ""."""
    if lib != "gvae":
        return ""
    from gvae.kernels import matmul_cpu
    from gvae.kernels.cpu import blas, threads, tuning
    if not blas.settable():
        return "  whole, on the BLAS's own threads"
    a, b = a.T if ta else a, b.T if tb else b
    form, blocks, _ = matmul_cpu.plan(a, b, split=threads.get_threads() > 1)
    how = " (measured here)" if matmul_cpu.key(a, b, None) in tuning.plans() else ""
    return f"  {form}" + (f" x{len(blocks)}" if len(blocks) > 1 else "") + how


def prepare(lib, threads):
    """make(a, b, out, ta, tb) -> (call, result): call() computes op(a) @ op(b) with ``lib`` (a and b as
    stored), result() returns it as a NumPy array. Only call() is timed."""
    if lib in ("openblas", "gvae"):
        if lib == "gvae":
            import gvae.kernels
            gvae.kernels.set_threads(threads)
        matmul = np.matmul if lib == "openblas" else gvae.kernels.matmul
        return lambda a, b, out, ta, tb: (lambda: matmul(a.T if ta else a, b.T if tb else b, out=out), lambda: out)
    if lib == "blis":
        import blis.py
        return lambda a, b, out, ta, tb: (
            lambda: blis.py.gemm(a, b, out=out, trans1=ta, trans2=tb, alpha=1.0, beta=0.0), lambda: out)
    if lib == "mkl":
        gemm = _mkl_sgemm()
        return lambda a, b, out, ta, tb: (lambda: gemm(a, b, out, ta, tb), lambda: out)
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)

        def make(a, b, out, ta, tb):
            x, y, z = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
            x, y = (x.t() if ta else x), (y.t() if tb else y)
            return (lambda: torch.mm(x, y, out=z)), (lambda: out)
        return make
    if lib == "jax":
        import jax
        import jax.numpy as jnp

        def make(a, b, out, ta, tb):
            f = jax.jit(lambda x, y: (x.T if ta else x) @ (y.T if tb else y))
            x, y = jnp.asarray(a), jnp.asarray(b)
            return (lambda: f(x, y).block_until_ready()), (lambda: np.asarray(f(x, y)))
        return make
    raise ValueError(f"unknown library {lib!r}")


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--libs", nargs="+", default=["openblas", "gvae"],
                        choices=["openblas", "gvae", "blis", "mkl", "torch", "jax"])
    parser.add_argument("--threads", type=int, default=2, help="threads of the gvae and torch rows")
    parser.add_argument("--repeat", type=int, default=80)
    parser.add_argument("--products", choices=["step", "eval"], default="step",
                        help="the ten products of a training step, or the three of an evaluation pass")
    args = parser.parse_args(argv)
    shapes = SHAPES if args.products == "step" else eval_shapes()
    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_model()}; NumPy's OpenBLAS: {blas_kernels()}; gvae and torch on {args.threads} thread(s)",
          flush=True)
    for lib in args.libs:
        try:
            make = prepare(lib, args.threads)
        except ImportError as e:
            print(f"{lib:9s} skipped: {e}")
            continue
        total = 0.0
        for name, m, k, n, ta, tb in shapes:
            a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
            call, result = make(a, b, np.empty((m, n), np.float32), ta, tb)
            call()
            expected = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
            if not np.allclose(result(), expected, rtol=1e-3, atol=1e-2 * np.sqrt(k)):
                raise SystemExit(f"{lib} gives a wrong {name}")
            seconds = median_seconds(call, args.repeat)
            total += seconds
            print(f"{lib:9s} {name:22s} {m:4d} x {k:4d} x {n:4d} {seconds * 1e6:8.1f} us "
                  f"{2 * m * k * n / seconds / 1e9:6.1f} GFLOP/s{gvae_plan(lib, a, b, ta, tb)}", flush=True)
        print(f"{lib:9s} all {len(shapes)} products: {total * 1e3:.2f} ms", flush=True)
        if args.products == "eval":
            print(f"{lib:9s} at most {shapes[0][1] / total:,.0f} importance samples per second", flush=True)


if __name__ == "__main__":
    main()
