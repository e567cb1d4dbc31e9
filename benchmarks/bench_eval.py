"""Importance samples per second of gvae's evaluation of log p(x) (``gvae eval``'s importance sampling alone,
without its ELBO pass, start-up or files) for a run folder, on ``--threads`` threads. Compare with the ceiling
of ``python benchmarks/bench_gemm.py --products eval --threads T`` (what the decoder's products alone allow).

    python benchmarks/bench_eval.py RUN --threads 2 --limit 200
    taskset -c 1 python benchmarks/bench_eval.py RUN --threads 1 --limit 100

The first ``--limit`` test images (binarised at 0.5, as the speed does not depend on the values), K =
``--iw-samples`` samples each, timed ``--repeats`` times after an untimed warm-up of one batch. Run it on a
quiet machine.
"""
import os
import time

# NumPy's OpenBLAS on one thread, as gvae's commands run it (set before NumPy loads the library).
os.environ["OPENBLAS_NUM_THREADS"] = "1"
import numpy as np  # noqa: E402

from gvae.io.arguments import ArgumentParser  # noqa: E402

from cpu_model import cpu_model  # noqa: E402  (benchmarks/cpu_model.py, beside this script)


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", metavar="RUN", help="a run folder written by gvae train")
    parser.add_argument("--threads", type=int, default=2, help="gvae's threads")
    parser.add_argument("--limit", type=int, default=200, help="test images")
    parser.add_argument("--iw-samples", type=int, default=5000, help="importance samples per image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=None, help="an MNIST .npz or IDX folder (default: MNIST from the cache)")
    args = parser.parse_args(argv)
    if min(args.threads, args.limit, args.iw_samples, args.repeats) < 1:
        parser.error("--threads, --limit, --iw-samples and --repeats must be >= 1")
    from gvae import kernels
    from gvae.evaluation.evaluate import importance_sampling
    from gvae.evaluation.trained import load
    from gvae.io.mnist import load_mnist
    kernels.set_threads(args.threads)
    trained = load(args.run)
    x = load_mnist(args.data)["test"][0][:args.limit]
    x = (x > 0.5).astype(trained.model.dtype)
    print(f"CPU: {cpu_model()}; gvae on {args.threads} thread(s); {len(x)} images x {args.iw_samples} samples",
          flush=True)
    importance_sampling(trained.model, trained.params, x[:100], min(args.iw_samples, 500), 1, progress=False)
    rates = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        out = importance_sampling(trained.model, trained.params, x, args.iw_samples, 1, progress=False)
        rates.append(len(x) * args.iw_samples / (time.perf_counter() - began))
        print(f"{rates[-1]:,.0f} importance samples per second (log p(x) ~ {np.mean(out['log_likelihood']):.4f})",
              flush=True)
    print(f"median {np.median(rates):,.0f} importance samples per second")


if __name__ == "__main__":
    main()
