"""What one training step of each task costs against the plain VAE's, in one process, interleaved block by
block (so machine noise hits every row alike): :meth:`gvae.training.Trainer.step` of ``generate`` (the
VAE) and of each other configuration given, at one width, latent size and batch.

    python benchmarks/bench_tasks.py --threads 1 --hidden 1024 1024 --latent 30 \\
        --task generate --task vcca --task vcca,private=30

A ``--task`` is a task name with TrainConfig settings after commas (``vcca,private=30``). The data are
random images of MNIST's shape with labels (the step's cost does not depend on their values); every row
is the median over ``--repeats`` timed steps, and its ratio to the first row is the median of per-block
ratios.
"""
import os
import statistics
import tempfile
import time

import numpy as np

from gvae.io.arguments import ArgumentParser
from gvae.sweep.spec import config_value


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", action="append", default=[], metavar="NAME[,K=V...]",
                   help="a task and its settings (repeat; the first is the reference)")
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--threads", type=int, default=1, help="gvae's threads; with 1 the process is pinned to one core")
    p.add_argument("--repeats", type=int, default=200, help="timed steps per task")
    p.add_argument("--block", type=int, default=10, help="steps per interleaved block")
    return p.parse_args(argv)


def settings_of(text):
    """'vcca,private=30' -> ('vcca', {'private': 30}); 'vlae,latent=16:16' -> ('vlae', {'latent': (16, 16)})
    (colons separate the values of a setting that takes several), each checked as gvae train checks it."""
    name, *pairs = text.split(",")
    out = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        out[key] = config_value(key, value.split(":") if ":" in value else value)
    return name, out


def main(argv=None):
    args = parse_args(argv)
    if args.threads == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from gvae import kernels
    from gvae.training import TrainConfig, Trainer
    from cpu_model import cpu_model  # benchmarks/cpu_model.py, beside this script

    kernels.set_threads(args.threads)
    rng = np.random.default_rng(0)
    data = {split: (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n))
            for split, n in (("train", 10 * args.batch), ("valid", args.batch), ("test", args.batch))}
    tasks = args.task or ["generate", "vcca"]
    steps, trainers = [], []
    with tempfile.TemporaryDirectory() as folder:
        for k, text in enumerate(tasks):
            name, extra = settings_of(text)
            config = TrainConfig.of(**{"task": name, "latent": args.latent, "hidden": tuple(args.hidden),
                                    "batch_size": args.batch, **extra})
            trainer = Trainer(config, data, os.path.join(folder, str(k)), progress=False, quiet=True)
            batch = next(iter(trainer.task.batches(trainer.inputs["train"], args.batch, trainer.rng)))
            steps.append(lambda t=trainer, b=batch: t.step(b, 1.0))
            trainers.append(trainer)
        for step, trainer in zip(steps, trainers):  # compile and warm every path first, past the step's
            for _ in range(args.block):            # trial of the tape against the replay
                step()
            for _ in range(60):
                if trainer.captured.trial is None:
                    break
                step()
        times = [[] for _ in steps]
        for _ in range(max(1, args.repeats // args.block)):
            for k, step in enumerate(steps):
                start = time.perf_counter()
                for _ in range(args.block):
                    step()
                times[k].append((time.perf_counter() - start) / args.block)
    print(f"# {cpu_model()}; {args.threads} thread(s); hidden {args.hidden}, latent {args.latent}, batch {args.batch}")
    print("| task | ms per step | vs " + tasks[0] + " |\n| --- | --- | --- |")
    for text, ts in zip(tasks, times):
        ratio = statistics.median(t / r for t, r in zip(ts, times[0]))
        print(f"| {text} | {1e3 * statistics.median(ts):.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
