"""Would another cut of gvae's products make the training step faster on this machine? Each product of
one step that gvae computes alone (not beside its pair) is cut every other way it could be (in one
call, in blocks of rows, in blocks of columns: gvae/kernels/matmul_cpu.py), and the whole step is timed
with that one product changed, in blocks of steps interleaved with the step as gvae cuts it (so that a
slow moment of the machine hits both alike).

The ratio printed is the median over rounds of (step with the alternative / mean of the two blocks of
the usual step around it): below 1, that alternative would be faster here. Products timed alone
(``bench_gemm.py``) miss what the step around them does to caches and to the other thread; this times
them where they run. The sparse first-layer products are left as they are (another cut of them is a
different sum, not the same product cut otherwise).

Usage: ``python benchmarks/bench_forms.py [--threads 2] [--iw 5] [--posterior extgrid] [--rounds 16]``.
"""
import os

from gvae.io.arguments import ArgumentParser

p = ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--threads", type=int, default=2, help="gvae's threads (the process is pinned to 1 core at 1)")
p.add_argument("--iw", type=int, default=1, help="importance samples: 1 = ELBO step, K > 1 = IWAE step")
p.add_argument("--posterior", default="diagonal")
p.add_argument("--rounds", type=int, default=16, help="interleaved rounds per alternative")
p.add_argument("--block", type=int, default=10, help="steps per timed block")
ARGS = p.parse_args()
if min(ARGS.threads, ARGS.iw, ARGS.rounds, ARGS.block) < 1:
    p.error("--threads, --iw, --rounds and --block must be >= 1")
os.environ["OPENBLAS_NUM_THREADS"] = "1"  # gvae splits its products over its own threads
if ARGS.threads == 1 and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from gvae import kernels  # noqa: E402
from gvae.io.mnist import load_mnist  # noqa: E402
from gvae.kernels import matmul_cpu  # noqa: E402
from gvae.kernels.cpu import threads  # noqa: E402
from gvae.training import TrainConfig, Trainer  # noqa: E402

from cpu_model import cpu_model  # noqa: E402  (benchmarks/cpu_model.py, beside this script)

kernels.set_threads(ARGS.threads)
RULE = matmul_cpu.plan
FORMS = ("whole", "rows", "columns")


def key(a, b, split):
    """A product's shape, its factors' layouts (N: rows contiguous, T: a transposed view) and whether it
    was given alone (``split``): the same key means the same cut."""
    layout = "".join("N" if x.strides[-1] == x.itemsize else "T" for x in (a, b))
    return (a.shape[0], a.shape[1], b.shape[1], layout, split)


def cut(a, b, form):
    """matmul_cpu.plan's answer for ``form`` (its blocks as the rule would make them)."""
    m, n = a.shape[0], b.shape[1]
    if form == "whole":
        return "whole", [(0, m)], None
    if form == "rows":
        return "rows", threads.blocks(m, matmul_cpu.MIN_ROWS), None
    return "columns", threads.blocks(n, matmul_cpu.MIN_ROWS), None


def main():
    rng = np.random.default_rng(0)
    pixels = load_mnist()["train"][0][:800]
    x = (rng.random(pixels.shape, dtype=np.float32) < pixels).astype(np.float32)
    data = {"train": (x, None), "valid": (x[:100], None), "test": (x[:100], None)}
    config = TrainConfig(posterior=ARGS.posterior, latent=16, hidden=(500, 500), activation="elu",
                         likelihood="bernoulli", batch_size=100, iw_samples=ARGS.iw, seed=0, dtype="float32")
    trainer = Trainer(config, data, tempfile.mkdtemp() + "/run", progress=False, quiet=True)
    trainer.rng = trainer.epoch_generator(0)  # what run_epoch sets before its steps
    batches = [np.ascontiguousarray(x[i * 100:(i + 1) * 100]) for i in range(8)]

    seen, forced = {}, {}

    def plan(a, b, split=True):
        k = key(a, b, split)
        found = cut(a, b, forced[k]) if k in forced else RULE(a, b, split)
        seen.setdefault(k, found[0])
        return found

    def block():
        start = time.perf_counter()
        for i in range(ARGS.block):
            trainer.step(batches[i % 8], 1.0)
        return (time.perf_counter() - start) / ARGS.block

    matmul_cpu.plan = plan
    try:
        for _ in range(4):
            block()
        step = "ELBO" if ARGS.iw == 1 else f"IWAE k={ARGS.iw}"
        print(f"# {cpu_model()}; {ARGS.threads} thread(s)")
        print(f"# {step} step, {ARGS.posterior}, 784-500-500-16, batch 100, float32: each alternative cut of one "
              f"product, {ARGS.rounds} rounds of {ARGS.block} steps interleaved with the step as gvae cuts it\n")
        print("| product (M x K x N, layouts) | gvae's cut | alternative | step ratio (median) | quartiles |")
        print("| --- | --- | --- | --- | --- |")
        alone = [(k, form) for k, form in seen.items() if k[4] and form != "sparse rows"]
        if not alone:
            print("| (none: on one thread gvae computes every product in one call) | | | | |")
        for k, form in alone:
            for other in FORMS:
                if other == form:
                    continue
                ratios = []
                for _ in range(ARGS.rounds):
                    before = block()
                    forced[k] = other
                    changed = block()
                    del forced[k]
                    ratios.append(changed / ((before + block()) / 2))
                q1, median, q3 = np.quantile(ratios, [0.25, 0.5, 0.75])
                print(f"| {k[0]} x {k[1]} x {k[2]} {k[3]} | {form} | {other} | {median:.3f} | "
                      f"{q1:.3f}-{q3:.3f} |", flush=True)
    finally:
        matmul_cpu.plan = RULE


if __name__ == "__main__":
    main()
