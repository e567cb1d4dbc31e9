"""A library whose matrix product takes an epilogue, against gvae's two passes: oneDNN's matmul with the bias
and the ELU fused into it (its C API through ctypes), against NumPy's OpenBLAS product followed by gvae's
bias + activation kernel, at the evaluation's and the training step's layer shapes, float32, on one thread:
the cost of each form on a core (gvae's threads cut the rows of either alike). On more threads the two
libraries' own thread pools (OpenMP's spinning after each call, OpenBLAS's) disturb each other in one process,
and the comparison says nothing.

oneDNN is not a dependency of gvae. The registry's CPU-only build links GNU OpenMP and nothing else::

    pip download --no-deps onednn-cpu-gomp==2023.2.0 -d /tmp/onednn
    python -m zipfile -e /tmp/onednn/onednn_cpu_gomp-2023.2.0-*.whl /tmp/onednn/x
    taskset -c 1 python benchmarks/bench_fused_library.py \
        /tmp/onednn/x/onednn_cpu_gomp-2023.2.0.data/data/lib/libdnnl.so.3

(the registry's newer ``onednn`` wheels need Intel's DPC++ and TBB runtimes). Each row: the least of
--rounds means over enough calls for about 0.1 s, both forms alternated; the largest error of
each against a float64 reference. Run it on a quiet machine.
"""
import ctypes
import os
import time

import numpy as np

from gvae.io.arguments import ArgumentParser

# The evaluation's decoder block (1,300 rows: kernels' BLOCK_BYTES at 784 pixels) and the step's layers.
SHAPES = {"eval": [(1300, 16, 500, "elu"), (1300, 500, 500, "elu"), (1300, 500, 784, "linear")],
          "step": [(100, 784, 500, "elu"), (100, 500, 500, "elu"), (500, 500, 500, "elu"), (500, 500, 784, "linear")]}
# oneDNN's C API (v3): the CPU engine, float32, the argument numbers, the ELU's algorithm number (the results
# are checked against the reference, so a wrong number cannot pass unseen).
CPU_ENGINE, F32, IN_ORDER = 1, 3, 1
ARG_SRC, ARG_DST, ARG_WEIGHTS, ARG_BIAS = 1, 17, 33, 41
ELTWISE_ELU = 0x22


class _Arg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


class OneDnn:
    """The few calls of oneDNN's C API that a fused matmul needs."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.dnnl_post_ops_append_eltwise.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
                                                          ctypes.c_float]
        self.engine = self._make("dnnl_engine_create", CPU_ENGINE, 0)
        self.stream = self._make("dnnl_stream_create", self.engine, IN_ORDER)

    def _call(self, name, *args):
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise RuntimeError(f"oneDNN's {name} returned status {status}")

    def _make(self, name, *args):
        handle = ctypes.c_void_p()
        self._call(name, ctypes.byref(handle), *args)
        return handle

    def _desc(self, rows, cols):
        dims = (ctypes.c_int64 * 12)(rows, cols)
        strides = (ctypes.c_int64 * 12)(cols, 1)
        return self._make("dnnl_memory_desc_create_with_strides", 2, dims, F32, strides)

    def matmul(self, m, k, n, activation):
        """run(x (m, k), w (k, n), b (n,), out (m, n)): out <- act(x @ w + b), one primitive."""
        descs = [self._desc(m, k), self._desc(k, n), self._desc(1, n), self._desc(m, n)]
        attr = self._make("dnnl_primitive_attr_create")
        if activation == "elu":
            post = self._make("dnnl_post_ops_create")
            self._call("dnnl_post_ops_append_eltwise", post, ELTWISE_ELU, ctypes.c_float(1.0), ctypes.c_float(0.0))
            self._call("dnnl_primitive_attr_set_post_ops", attr, post)
        elif activation != "linear":
            raise ValueError(f"activation: expected elu or linear, got {activation!r}")
        desc = self._make("dnnl_matmul_primitive_desc_create", self.engine, *descs, attr)
        primitive = self._make("dnnl_primitive_create", desc)
        memories = [self._make("dnnl_memory_create", d, self.engine, None) for d in descs]
        args = (_Arg * 4)(*[_Arg(a, mem.value) for a, mem in zip((ARG_SRC, ARG_WEIGHTS, ARG_BIAS, ARG_DST), memories)])

        def run(x, w, b, out):
            for mem, array in zip(memories, (x, w, b, out)):
                self._call("dnnl_memory_set_data_handle", mem, ctypes.c_void_p(array.ctypes.data))
            self._call("dnnl_primitive_execute", primitive, self.stream, 4, args)
            self._call("dnnl_stream_wait", self.stream)
        return run


def _seconds(fn, calls):
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("library", help="oneDNN's shared library (libdnnl.so.3), as the module's docstring fetches it")
    p.add_argument("--shapes", choices=sorted(SHAPES), nargs="+", default=sorted(SHAPES))
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if not os.path.isfile(args.library):
        p.error(f"no file {args.library}: fetch oneDNN as the module's docstring says")
    # This process's own settings, before either library starts its threads: one thread each.
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"
    from gvae import kernels
    from cpu_model import cpu_model
    kernels.set_threads(1)
    dnnl = OneDnn(args.library)
    print(f"CPU: {cpu_model()}; one thread; oneDNN from {args.library}", flush=True)
    rng = np.random.default_rng(0)
    for group in args.shapes:
        total = [0.0, 0.0]
        for m, k, n, activation in SHAPES[group]:
            x = rng.standard_normal((m, k)).astype(np.float32)
            w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
            b = rng.standard_normal(n).astype(np.float32)
            ours, theirs = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
            fused = dnnl.matmul(m, k, n, activation)

            def two_passes():
                np.matmul(x, w, out=ours)
                kernels.bias_activation(ours, b, activation)

            def one_call():
                fused(x, w, b, theirs)
            two_passes()
            one_call()
            h = x.astype(np.float64) @ w.astype(np.float64) + b
            ref = np.where(h > 0, h, np.expm1(np.minimum(h, 0.0))) if activation == "elu" else h
            errors = [float(np.abs(out - ref).max()) for out in (ours, theirs)]
            calls = max(5, int(2e8 / (m * k * n)))
            rounds = [(_seconds(two_passes, calls), _seconds(one_call, calls)) for _ in range(args.rounds)]
            best = [min(r[0] for r in rounds), min(r[1] for r in rounds)]
            total = [t + s for t, s in zip(total, best)]
            print(f"{group} {m:5d} x {k:3d} x {n:3d} {activation:6s}  OpenBLAS + gvae {best[0] * 1e6:8.1f} us   "
                  f"oneDNN fused {best[1] * 1e6:8.1f} us   oneDNN / gvae {best[1] / best[0]:.3f}   "
                  f"max error {errors[0]:.1e} / {errors[1]:.1e}", flush=True)
        print(f"{group}: all layers, OpenBLAS + gvae {total[0] * 1e6:.1f} us, oneDNN fused {total[1] * 1e6:.1f} us, "
              f"oneDNN / gvae {total[1] / total[0]:.3f}", flush=True)


if __name__ == "__main__":
    main()
