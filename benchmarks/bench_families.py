"""Cost of one training step per posterior family, relative to the diagonal family.

The real step (:meth:`gvae.training.Trainer.step`) of a 784-H-H-d ELU VAE with a Bernoulli decoder, float32,
batch 100, for each family, interleaved block by block in one process so that machine noise hits every
family alike; medians over ``--repeats`` steps:

    python benchmarks/bench_families.py --latent 16 --hidden 500 --threads 1
"""
import os

from gvae.io.arguments import ArgumentParser

parser = ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--latent", type=int, default=16)
parser.add_argument("--hidden", type=int, default=500)
parser.add_argument("--batch", type=int, default=100)
parser.add_argument("--repeats", type=int, default=100)
parser.add_argument("--block", type=int, default=10)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--clock", choices=["wall", "cpu"], default="cpu",
                    help="cpu: this thread's CPU time (with --threads 1, robust to other processes on a "
                         "shared machine); wall: elapsed time")
parser.add_argument("--families", nargs="+",
                    default=["diagonal", "ar1", "rank1", "chain", "grid", "extgrid", "full"])
parser.add_argument("--likelihoods", nargs="+", default=["bernoulli"],
                    help="observation models to time (each family x each likelihood)")
parser.add_argument("--pixel-factor", choices=["decoder", "global"], default="decoder",
                    help="logitnormal*: the pixel precision factor from the decoder or one learned factor")
args = parser.parse_args()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(args.threads)  # before NumPy and Numba start their thread pools

import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from gvae.training import TrainConfig, Trainer  # noqa: E402
from gvae.training.batching import observations  # noqa: E402

rng = np.random.default_rng(0)
x = (np.floor(rng.random((8 * args.batch, 784)) * 256) / 256).astype(np.float32)
data = {s: (x, np.zeros(len(x))) for s in ("train", "valid", "test")}
tmp = tempfile.mkdtemp()
trainers = {}
for lik in args.likelihoods:
    for fam in args.families:
        config = TrainConfig(posterior=fam, likelihood=lik, latent=args.latent, hidden=(args.hidden, args.hidden),
                             batch_size=args.batch, pixel_factor=args.pixel_factor)
        trainer = Trainer(config, data, tmp, quiet=True)
        batches = [observations(x[i * args.batch:(i + 1) * args.batch], trainer.model.likelihood, rng)
                   for i in range(8)]
        for b in batches * 2:  # compile and warm up
            trainer.step(b, 1.0)
        trainers[(lik, fam)] = (trainer, batches)

clock = time.thread_time if args.clock == "cpu" else time.perf_counter
if args.clock == "cpu" and args.threads != 1:
    parser.error("--clock cpu measures this thread only: use it with --threads 1")
times = {key: [] for key in trainers}
for r in range(args.repeats // args.block):
    keys = list(trainers)
    for key in keys[r % len(keys):] + keys[:r % len(keys)]:
        trainer, batches = trainers[key]
        for i in range(args.block):
            t = clock()
            trainer.step(batches[i % 8], 1.0)
            times[key].append(clock() - t)

print(f"training step, 784-{args.hidden}-{args.hidden}-{args.latent} ELU, batch {args.batch}, float32, "
      f"{args.threads} thread(s), {args.clock} clock, median of {args.repeats} steps")
print(f"{'likelihood':20s} {'posterior':10s} {'ms':>8s} {'vs diagonal':>12s}")
for lik in args.likelihoods:
    base = np.median(times.get((lik, "diagonal"), times[(lik, args.families[0])]))
    for fam in args.families:
        m = np.median(times[(lik, fam)])
        print(f"{lik:20s} {fam:10s} {m * 1e3:8.2f} {m / base:11.3f}x")
