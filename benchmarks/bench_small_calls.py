"""One small kernel called on its own, back to back or after idle time: what splitting it over gvae's threads
costs a program that calls gvae between other work (a worker idle for 0.5 ms sleeps, and waking it costs
more than a small block's work).

Times ``kernels.bernoulli_loglik`` with its gradient on --rows x 784 float32 logits, --calls times, each
after --gap seconds of sleep (0: back to back), on --threads threads; prints the median per call::

    python benchmarks/bench_small_calls.py --rows 30 --gap 0.002 --threads 2
"""
import time

import numpy as np

from gvae.io.arguments import ArgumentParser


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[30, 100])
    p.add_argument("--gap", type=float, nargs="+", default=[0.0, 0.002], help="seconds of sleep before each call")
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if min(args.rows) < 1 or args.calls < 1 or args.threads < 1 or not min(args.gap) >= 0:
        p.error("--rows, --calls and --threads must be >= 1, --gap >= 0")
    from gvae import kernels
    kernels.set_threads(args.threads)
    rng = np.random.default_rng(3)
    for rows in args.rows:
        x = (rng.random((rows, 784)) < 0.2).astype(np.float32)
        logits = rng.standard_normal((1, rows, 784), dtype=np.float32)
        for gap in args.gap:
            for _ in range(50):  # compiled, cached, the workers started
                kernels.bernoulli_loglik(logits, x, want_grad=True)
            times = []
            for _ in range(args.calls):
                if gap:
                    time.sleep(gap)
                start = time.perf_counter()
                kernels.bernoulli_loglik(logits, x, want_grad=True)
                times.append(time.perf_counter() - start)
            print(f"{rows} x 784, {args.threads} thread(s), {gap * 1e3:g} ms before each call: "
                  f"median {np.median(times) * 1e6:.1f} us")


if __name__ == "__main__":
    main()
