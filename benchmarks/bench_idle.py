"""The training step after idle time: why a step that follows a pause is slower than one run back to back.

Times gvae's Trainer.step (784-500-500-16 ELU VAE, Bernoulli decoder, batch 100, float32; generated binary
batches at MNIST's mean intensity) --repeats times, each after --pause seconds of sleep, and the step right
after it, in one of three modes:

* ``plain``: gvae as it is (its workers spin briefly after their last task, then sleep);
* ``spin``: the workers spin through the pause (their spin stretched past it, a diagnosis, not a setting);
* ``woken``: the workers woken (a no-op posted and collected) after the pause, before the timed step.

    python benchmarks/bench_idle.py --mode plain --threads 2
"""
import tempfile
import time

import numpy as np

from gvae.io.arguments import ArgumentParser


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["plain", "spin", "woken"], default="plain")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pause", type=float, default=0.2, help="seconds of sleep before each timed step")
    p.add_argument("--repeats", type=int, default=40)
    args = p.parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or not args.pause >= 0:
        p.error("--threads and --repeats must be >= 1, --pause >= 0")
    from gvae import kernels
    from gvae.kernels.cpu import threads
    from gvae.training import TrainConfig, Trainer
    if args.mode == "spin":
        threads.SPIN_SECONDS = 5 * args.pause + 0.1  # read when the workers start, below
    kernels.set_threads(args.threads)
    rng = np.random.default_rng(0)
    batch = 100
    x = rng.random((batch * 8, 784), dtype=np.float32) * np.float32(0.26)
    y = np.zeros(len(x), np.int64)
    data = {"train": (x, y), "valid": (x[:batch], y[:batch]), "test": (x[:batch], y[:batch])}
    binary = (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)
    batches = [np.ascontiguousarray(binary[i * batch:(i + 1) * batch]) for i in range(8)]
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(TrainConfig(hidden=(500, 500), latent=16, activation="elu", likelihood="bernoulli",
                                      batch_size=batch, kl="analytic", dtype="float32", seed=0),
                          data, out, progress=False, quiet=True)
        for i in range(30):  # compiled, recorded, checked and replayed before the clock starts
            trainer.step(batches[i % 8], 1.0)
        after, next_ = [], []
        for i in range(args.repeats):
            time.sleep(args.pause)
            if args.mode == "woken":
                for worker in threads.RUNTIME.workers:
                    worker.post(threads._NOOP, threads._NOOP.native)
                    worker.collect(threads._rounds(threads.WAIT_SECONDS))
            start = time.perf_counter()
            trainer.step(batches[i % 8], 1.0)
            after.append(time.perf_counter() - start)
            start = time.perf_counter()
            trainer.step(batches[(i + 1) % 8], 1.0)
            next_.append(time.perf_counter() - start)
    print(f"{args.mode}, {args.threads} thread(s): the step after {args.pause:g} s of sleep {np.median(after) * 1e3:.2f} ms, "
          f"the step right after it {np.median(next_) * 1e3:.2f} ms (medians of {args.repeats})")


if __name__ == "__main__":
    main()
