"""What the sparse first layer is worth: gvae's products on a stochastically binarised MNIST batch with its
sparse rows (gvae/kernels/sparse_rows_cpu.py) and without them (the BLAS), and the whole training step
(784-500-500-16 ELU, Bernoulli, Adam) both ways, interleaved in one process.

Usage: ``python benchmarks/bench_sparse_rows.py [--threads 2] [--iw 5]``. "dense" is gvae with the
sparse form switched off (``matmul_cpu.sparse_factor`` replaced by one that declines), nothing else changed.
"""
import os

from gvae.io.arguments import ArgumentParser

p = ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--threads", type=int, default=1)
p.add_argument("--iw", type=int, default=1, help="importance samples of the step (1: the ELBO step)")
p.add_argument("--rounds", type=int, default=40, help="interleaved rounds of 10 steps per variant")
ARGS = p.parse_args()
if ARGS.threads < 1 or ARGS.iw < 1 or ARGS.rounds < 2:
    p.error("--threads and --iw must be >= 1, --rounds >= 2")
for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
os.environ["OPENBLAS_NUM_THREADS"] = "1"  # gvae splits its products over its own threads
if ARGS.threads == 1 and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from gvae import kernels  # noqa: E402
from gvae.io.mnist import load_mnist  # noqa: E402
from gvae.kernels import matmul_cpu  # noqa: E402
from gvae.training import TrainConfig, Trainer  # noqa: E402

kernels.set_threads(ARGS.threads)
VARIANTS = {"sparse": matmul_cpu.sparse_factor, "dense": lambda a, max_density=None: None}


def best_ms(fun, n=200, repeats=7):
    """The fastest of ``repeats`` averages over n calls, in ms."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fun()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e3


def main():
    rng = np.random.default_rng(0)
    pixels = load_mnist()["train"][0][:800]
    x = (rng.random(pixels.shape, dtype=np.float32) < pixels).astype(np.float32)
    batch = np.ascontiguousarray(x[:100])
    W = rng.standard_normal((784, 500)).astype(np.float32)
    g = rng.standard_normal((100, 500)).astype(np.float32)
    h, gW = np.empty((100, 500), np.float32), np.empty((784, 500), np.float32)
    print(f"threads {ARGS.threads}; a binarised batch: {np.count_nonzero(batch) / batch.size:.1%} of its pixels on")
    for name, rows in VARIANTS.items():
        matmul_cpu.sparse_factor = rows
        print(f"{name:>6}: x @ W {best_ms(lambda: kernels.matmul(batch, W, out=h)):.3f} ms, "
              f"x.T @ g {best_ms(lambda: kernels.matmul(batch.T, g, out=gW)):.3f} ms")

    data = {"train": (x, None), "valid": (x[:100], None), "test": (x[:100], None)}
    config = TrainConfig(latent=16, hidden=(500, 500), activation="elu", likelihood="bernoulli", batch_size=100,
                         iw_samples=ARGS.iw, seed=0, dtype="float32")
    trainers = {name: Trainer(config, data, tempfile.mkdtemp() + "/run", progress=False, quiet=True) for name in VARIANTS}
    for trainer in trainers.values():
        trainer.rng = trainer.epoch_generator(0)  # what run_epoch sets before its steps
    batches = [np.ascontiguousarray(x[i * 100:(i + 1) * 100]) for i in range(8)]
    times = {name: [] for name in VARIANTS}
    for _ in range(ARGS.rounds):
        for name, trainer in trainers.items():
            matmul_cpu.sparse_factor = VARIANTS[name]
            for i in range(10):
                start = time.perf_counter()
                trainer.step(batches[i % 8], 1.0)
                times[name].append(time.perf_counter() - start)
    matmul_cpu.sparse_factor = VARIANTS["sparse"]
    median = {name: np.median(t[10:]) * 1e3 for name, t in times.items()}  # the first round warms up
    step = "ELBO" if ARGS.iw == 1 else f"IWAE k={ARGS.iw}"
    print(f"{step} step: sparse {median['sparse']:.2f} ms, dense {median['dense']:.2f} ms, "
          f"ratio {median['sparse'] / median['dense']:.3f} (medians of {len(times['sparse']) - 10} steps each)")


if __name__ == "__main__":
    main()
