"""Time one training step of the 784-500-500-16 ELU VAE (Bernoulli decoder, float32, Adam) against its
peers: the ELBO step, or the IWAE step with ``--iw K``.

Compares, in one process and interleaved block by block (so machine noise hits every row alike):

* ``gvae <family>``: :meth:`gvae.training.Trainer.step`, the real training step, for each family of
  ``--posterior`` (value_and_grad of the loss, writing the gradients into one flat buffer; norm; one
  read of the loss and the reported means; fused Adam), on ``--threads`` of gvae's own threads; each
  family after the first with its ratio to the first family's step in the column "vs <first family>";
* ``gvae <family> [k=v,...]``: with each ``--objective`` (TrainConfig settings such as ``beta=0.5``,
  ``mmd=1000,alpha=1`` or ``target_rate=20``), the first family's step on that objective, with its ratio
  to the same family's ELBO (or IWAE) step in that column; with ``--rules``, the first family's step with
  its products cut by the hand-made rules (tuning off), its ratio there too;
* ``gvae phased``: a second diagonal Trainer with a timer around each phase it calls, for the breakdown;
* with ``--tape``, ``gvae <family>, tape``: each family's step with the native record off (every step on
  the tape), with its ratio to the replayed step in the column "vs <first family>";
* PyTorch eager with ``torch.optim.Adam`` (default, ``foreach`` and ``fused`` where this build has
  them), same architecture, initialisation and loss (diagonal q, or with ``--peer-posterior full`` the dense
  MultivariateNormal of benchmarks/step_peers.py), ``torch.set_num_threads(threads)``;
* JAX ``jit`` of value_and_grad and optax's Adam in one compiled step, parameters and optimiser state
  donated, the noise drawn inside the step;
* the matrix products alone (forward and backward GEMMs of all six layers through ``gvae.kernels.matmul``
  into preallocated outputs, the first layer's on a binarised batch as in the step), gvae's floor.

The data are the first MNIST training images, binarised stochastically, the same batches for every
implementation.

Every peer runs at its best: nothing here sets ``OMP_WAIT_POLICY`` (which parks PyTorch's OpenMP
threads); with ``--threads 1`` the whole process is pinned to one core (``sched_setaffinity``), the
only limit that XLA's thread pool obeys; NumPy's OpenBLAS is held to one thread because gvae splits its
products over its own threads (gvae/kernels/matmul_cpu.py).

Usage: ``python benchmarks/bench_step.py [--threads 2] [--iw 5] [--posterior diagonal chain extgrid]
[--objective beta=0.5 --objective mmd=1000,alpha=1]``.
Compare ratios from one run; absolute times on a shared machine drift between runs.
"""
import os

from gvae.io.arguments import ArgumentParser


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=200, help="timed steps per implementation")
    p.add_argument("--block", type=int, default=10, help="steps per interleaved block")
    p.add_argument("--pause", type=float, default=0.0,
                   help="seconds of sleep before each block (an independent harness's 0.2: each implementation "
                        "starts its round from idle threads and caches)")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="OPENBLAS_NUM_THREADS for this process (1: as gvae holds it; a user's process leaves it at "
                        "the core count)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps per implementation first")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--hidden", type=int, default=500, help="width of both hidden layers")
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="threads for gvae, torch and (1: one core) JAX")
    p.add_argument("--iw", type=int, default=1, help="importance samples: 1 = ELBO step, K > 1 = IWAE step")
    p.add_argument("--posterior", nargs="+", default=["diagonal"], help="gvae families to time")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    p.add_argument("--peer-posterior", choices=["diagonal", "full"], default="diagonal",
                   help="the PyTorch rows' posterior: diagonal, or full (a dense MultivariateNormal(precision_matrix="
                        "L L^T), the peer of gvae's full family; the JAX row is then skipped)")
    p.add_argument("--no-jax", action="store_true", help="skip the JAX row")
    p.add_argument("--objective", action="append", default=[], metavar="K=V[,K=V]",
                   help="also time the first family's step with these TrainConfig settings (repeatable), "
                        "e.g. beta=0.5 or mmd=1000,alpha=1")
    p.add_argument("--tape", action="store_true",
                   help="also time each family's step with the native record off: the taped step, with its ratio to "
                        "the replayed one (gvae/training/captured_step.py)")
    p.add_argument("--rules", action="store_true",
                   help="also time the first family's step with tuning off: its products cut by the hand-made "
                        "rules, against this machine's tuned plans (gvae.kernels.cpu.tuning)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.block < 1 or args.threads < 1 or args.iw < 1 or args.blas_threads < 1:
        p.error("--repeats, --block, --threads, --iw and --blas-threads must be >= 1")
    if not (args.pause >= 0):
        p.error("--pause must be >= 0 seconds")
    return args


ARGS = parse_args()
# Thread counts must be fixed before NumPy (OpenBLAS), Numba, torch or XLA load their thread pools.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.blas_threads)  # 1 by default: gvae splits its GEMMs itself
if ARGS.threads == 1 and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import gc  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from gvae import kernels  # noqa: E402
from gvae.io.mnist import load_mnist  # noqa: E402
from gvae.sweep.spec import FIELDS, config_value  # noqa: E402
from gvae.training import TrainConfig, Trainer  # noqa: E402

from cpu_model import blas_kernels, cpu_model  # noqa: E402  (benchmarks/cpu_model.py, beside this script)
from step_peers import N_IN, init_weights, jax_step, layer_sizes, torch_steps  # noqa: E402  (beside this script too)

kernels.set_threads(ARGS.threads)


def parse_settings(text):
    """``"k=v,k=v"`` -> {TrainConfig field: value}, each value checked as ``gvae train --k`` checks it."""
    settings = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in FIELDS:
            raise ValueError(f"{item!r} is not KEY=VALUE with KEY a gvae train setting")
        try:
            settings[key] = config_value(key, value.strip())
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
    return settings


# The settings are parsed here, once NumPy's and Numba's thread counts are fixed above.
try:
    ARGS.objective = [parse_settings(text) for text in ARGS.objective]
except ValueError as e:
    sys.exit(f"bench_step.py: error: --objective: {e}")


N_BATCHES = 8  # distinct batches cycled through, so no implementation sees one batch only

try:
    import torch
    TORCH_ERROR = None
except Exception as exc:  # noqa: BLE001 - any import failure just drops the torch rows
    torch = None
    TORCH_ERROR = f"{type(exc).__name__}: {exc}"

try:
    import jax
    import optax  # noqa: F401 - the JAX row's optimiser (step_peers.jax_step)
    JAX_ERROR = None
except Exception as exc:  # noqa: BLE001 - any import failure just drops the JAX row
    jax = None
    JAX_ERROR = f"{type(exc).__name__}: {exc}"


def make_data(args, rng):
    """The first training images of MNIST (fetched once, as gvae train does), and N_BATCHES batches of them
    binarised stochastically: what every implementation trains on (13% of the pixels are on, which gvae's
    first-layer products exploit: gvae/kernels/sparse_rows_cpu.py)."""
    n = args.batch * N_BATCHES
    x = np.ascontiguousarray(load_mnist()["train"][0][:n], dtype=np.float32)
    y = np.zeros(n, dtype=np.int64)
    data = {"train": (x, y), "valid": (x[:args.batch], y[:args.batch]), "test": (x[:args.batch], y[:args.batch])}
    binary = (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)
    batches = [np.ascontiguousarray(binary[i * args.batch:(i + 1) * args.batch]) for i in range(N_BATCHES)]
    return data, batches


# --------------------------------------------------------------------------------------------------
# Implementations: each is a callable(i) that performs step i (batch i % N_BATCHES), or, for the
# phased variant, returns the seconds spent in each phase.
# --------------------------------------------------------------------------------------------------

def gvae_trainer(args, data, out, posterior="diagonal", **settings):
    cfg = TrainConfig(**{**dict(posterior=posterior, latent=args.latent, hidden=(args.hidden, args.hidden),
                                activation="elu", likelihood="bernoulli", batch_size=args.batch, lr=1e-3,
                                kl="analytic", samples=1, iw_samples=args.iw, seed=args.seed, dtype="float32"),
                         **settings})
    return Trainer(cfg, data, out, progress=False, quiet=True)


def gvae_step(trainer, batches):
    def step(i):
        if trainer.step(batches[i % N_BATCHES], 1.0) is None:
            raise RuntimeError("gvae skipped a step (non-finite loss or gradient)")
    return trialled(trainer, step)


def trialled(trainer, step):
    """``step`` with ``warming()``: whether the trainer's step is still in its trial of the tape against the
    replay (gvae.training.captured_step), whose steps the warm-up runs on past ``--warmup`` untimed."""
    step.warming = lambda: trainer.captured.trial is not None
    return step


def untuned(step):
    """``step`` with gvae's tuning off while it runs: every product cut by its rule."""
    from gvae.kernels.cpu import tuning

    def run(i):
        before = tuning.active()
        tuning.set_tuning(False)
        try:
            step(i)
        finally:
            tuning.set_tuning(before)
    run.warming = step.warming
    return run


PHASES = ("forward+backward", "norm", "adam", "other (eps, read)")


def gvae_phased_step(trainer, batches):
    """``trainer.step`` itself, with a timer wrapped around each phase it calls: ``step_fn``
    (value_and_grad, which writes the gradients into the flat buffer's views), ``kernels.sum_squares``
    and ``optimizer.update``. Whatever is left (drawing eps, the one read of the loss and the reported
    means, checks) is "other". Wrapping the callees, rather than re-implementing the step, keeps this in
    step with Trainer.step as it changes."""
    clock = time.perf_counter
    spent = dict.fromkeys(PHASES, 0.0)

    def timed(phase, fun):
        def wrapper(*a, **kw):
            t0 = clock()
            try:
                return fun(*a, **kw)
            finally:
                spent[phase] += clock() - t0
        return wrapper

    # Replayed or taped, the step's forward and backward (drawing eps is "other", with the reads and checks).
    trainer.captured._value_and_grad = timed("forward+backward", trainer.captured._value_and_grad)
    trainer.optimizer.update = timed("adam", trainer.optimizer.update)
    plain_sum_squares = kernels.sum_squares
    timed_sum_squares = timed("norm", plain_sum_squares)

    def step(i):
        for k in spent:
            spent[k] = 0.0
        kernels.sum_squares = timed_sum_squares  # only while this trainer steps
        try:
            t0 = clock()
            result = trainer.step(batches[i % N_BATCHES], 1.0)
            total = clock() - t0
        finally:
            kernels.sum_squares = plain_sum_squares
        if result is None:
            raise RuntimeError("gvae skipped a step (non-finite loss or gradient)")
        spent[PHASES[-1]] = total - sum(spent[k] for k in PHASES[:-1])
        return tuple(spent[k] for k in PHASES)
    return trialled(trainer, step)


def gemm_floor(args, rng, batch):
    """x@W forward, then g@W.T (not for the first layer: no gradient wrt the data) and x.T@g together,
    through gvae.kernels.matmuls as gvae's dense layers call it; the decoder's rows are batch x iw, the
    first layer's x is the binarised ``batch`` (so its two products are sparse ones, as in gvae's step)."""
    groups = []
    for k, (din, dout) in enumerate(layer_sizes(args.hidden, args.latent)):
        rows = args.batch * (args.iw if k >= 3 else 1)
        x = batch if k == 0 else rng.standard_normal((rows, din), dtype=np.float32)
        W = rng.standard_normal((din, dout), dtype=np.float32)
        g = rng.standard_normal((rows, dout), dtype=np.float32)
        h, gx, gW = np.empty((rows, dout), np.float32), np.empty((rows, din), np.float32), np.empty_like(W)
        groups.append([(x, W, h)])
        groups.append(([(g, W.T, gx)] if k > 0 else []) + [(x.T, g, gW)])  # side by side, as ops.dense
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for group in groups for a, b, _ in group)

    def step(i):
        for group in groups:
            kernels.matmuls(group)
    return step, flops


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------

def run_interleaved(impls, phased, repeats, block, warmup, pause=0.0):
    """Alternate blocks of ``block`` steps between implementations, rotating their order every round, with
    ``pause`` seconds of sleep before each block.

    Returns ({name: per-step seconds}, {name: per-round block medians}, per-step phase times)."""
    for step in [*impls.values(), phased]:
        i = 0
        while i < warmup or (getattr(step, "warming", bool)() and i < warmup + 60):
            step(i)
            i += 1
    names = list(impls) + ["__phased__"]
    times = {n: [] for n in names}
    rounds = {n: [] for n in names}
    phase_rows = []
    clock = time.perf_counter
    n_rounds = -(-repeats // block)
    gc.collect()
    for r in range(n_rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            block_times = []
            if pause:
                time.sleep(pause)
            for j in range(block):
                i = r * block + j
                if name == "__phased__":
                    row = phased(i)
                    phase_rows.append(row)
                    block_times.append(sum(row))
                else:
                    t0 = clock()
                    impls[name](i)
                    block_times.append(clock() - t0)
            times[name] += block_times
            rounds[name].append(float(np.median(block_times)))
    return times, rounds, np.array(phase_rows)


def summary(ts):
    q25, q50, q75 = np.percentile(np.asarray(ts) * 1e3, [25, 50, 75])
    return q50, q25, q75


def paired_ratio(rounds, name, ref):
    """Median over rounds of (block median of ``name`` / block median of ``ref``): noise that hits one
    round hits both and cancels."""
    return float(np.median(np.asarray(rounds[name]) / np.asarray(rounds[ref])))


def product_plans(trainer, batch):
    """How gvae computed each product of one step of ``trainer`` (gvae.kernels.matmul_cpu: the rule, or
    this machine's tuned plan), as "M x K x N form xblocks" with a count where a cut repeats."""
    from collections import Counter

    from gvae.kernels import matmul_cpu
    from gvae.kernels.cpu import blas, tuning
    seen, tasks = Counter(), matmul_cpu.tasks

    def recording(a, b, out, found):
        blocks = f" x{len(found[1])}" if len(found[1]) > 1 else ""
        seen[f"{a.shape[0]}x{a.shape[1]}x{b.shape[1]} {found[0]}{blocks}"] += 1
        return tasks(a, b, out, found)
    trainer.step(batch, 1.0)  # a first step measures the plans that this machine has not kept yet
    matmul_cpu.tasks = recording
    try:
        trainer.step(batch, 1.0)
    finally:
        matmul_cpu.tasks = tasks
    where = "" if blas.settable() else " (the BLAS's thread count cannot be set: each whole, on its own threads)"
    how = f"; tuned, plans in {tuning.plan_file()}" if tuning.active() else "; hand-made rules (tuning off)"
    return ", ".join(k + (f" ({n})" if n > 1 else "") for k, n in seen.items()) + where + how


def main(args):
    rng = np.random.default_rng(args.seed)
    data, batches = make_data(args, rng)
    weights = init_weights(args.hidden, args.latent, np.random.default_rng(args.seed), args.peer_posterior)
    with tempfile.TemporaryDirectory() as out:
        trainers = {f: gvae_trainer(args, data, out, f) for f in args.posterior}
        trainer = next(iter(trainers.values()))
        impls = {f"gvae {f}": gvae_step(t, batches) for f, t in trainers.items()}
        first = args.posterior[0]
        variants = {f"gvae {f}": f"gvae {first}" for f in args.posterior[1:]}
        for settings in args.objective:
            name = f"gvae {first} " + ",".join(f"{k}={v}" for k, v in settings.items())
            variants[name] = f"gvae {first}"
            impls[name] = gvae_step(gvae_trainer(args, data, out, first, **settings), batches)
        if args.tape:
            for f in args.posterior:
                taped = gvae_trainer(args, data, out, f)
                taped.captured.capture = None
                impls[f"gvae {f}, tape"] = gvae_step(taped, batches)
                variants[f"gvae {f}, tape"] = f"gvae {f}"
        if args.rules:
            name = f"gvae {first}, hand-made rules"
            variants[name] = f"gvae {first}"
            impls[name] = untuned(gvae_step(gvae_trainer(args, data, out, first), batches))
        phased = gvae_phased_step(gvae_trainer(args, data, out), batches)  # its own, instrumented
        floor_step, floor_flops = gemm_floor(args, rng, batches[0])
        plans = product_plans(trainer, batches[0])
        impls["GEMMs alone (gvae matmul)"] = floor_step
        notes = []
        if args.no_torch:
            notes.append("PyTorch rows skipped (--no-torch)")
        elif torch is None:
            notes.append(f"PyTorch rows skipped: torch not importable ({TORCH_ERROR})")
        else:
            tsteps, tnotes = torch_steps(args.latent, args.iw, weights, batches, args.threads, args.seed,
                                         args.peer_posterior)
            impls.update(tsteps)
            notes += tnotes
        if args.no_jax:
            notes.append("JAX row skipped (--no-jax)")
        elif args.peer_posterior != "diagonal":
            notes.append(f"JAX row skipped: its model has a diagonal posterior, the PyTorch rows' is {args.peer_posterior}")
        elif jax is None:
            notes.append(f"JAX row skipped: jax/optax not importable ({JAX_ERROR})")
        else:
            impls[f"JAX {jax.__version__} jit"] = jax_step(args.latent, args.iw, weights, batches, args.seed)

        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        times, rounds, phases = run_interleaved(impls, phased, args.repeats, args.block, args.warmup, args.pause)
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()[0]

    n_params = trainer.params.size
    step = "ELBO" if args.iw == 1 else f"IWAE k={args.iw}"
    print(f"{step} step, VAE {N_IN}-{args.hidden}-{args.hidden}-{args.latent} ELU, Bernoulli, batch {args.batch}, "
          f"float32, Adam; {n_params:,} parameters")
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # noqa: BLE001 - show_config's layout differs between NumPy versions
        blas = "?"
    tinfo = f", torch {torch.__version__} {torch.get_num_threads()}t" if "torch" in " ".join(impls) else ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"CPU: {cpu_model()}")
    blas += f" ({blas_kernels()})"
    print(f"threads {args.threads} on {cores} core(s) (gvae {kernels.get_threads()}t, NumPy BLAS: {blas} 1t{tinfo}); "
          f"{args.repeats} steps each in blocks of {args.block}, interleaved, {args.pause:g} s of sleep before each "
          f"block, OpenBLAS at {args.blas_threads} thread(s); {wall:.1f} s")
    print(f"1-minute load average {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores")
    if max(load_before, load_after) > (os.cpu_count() or 1) - 0.5:
        print("warning: the machine is busy; absolute times mean little")
    print()
    refs = [r for r in impls if r.startswith("JAX")] + [r for r in ("torch eager, Adam",) if r in impls]
    width = max(28, *(len(n) for n in impls))
    header = (f"{'implementation':<{width}} {'median ms':>10} {'IQR ms':>16}"
              + "".join(f" {'vs ' + r.split(' ')[0]:>10}" for r in refs) + (f" {'vs ' + first:>10}" if variants else ""))
    print(header)
    print("-" * len(header))
    for name in list(impls) + ["__phased__"]:
        med, q25, q75 = summary(times[name])
        label = "gvae phased (sum of phases)" if name == "__phased__" else name
        ratios = "".join(f" {paired_ratio(rounds, name, r):>9.2f}x" for r in refs)
        if name in variants:
            ratios += f" {paired_ratio(rounds, name, variants[name]):>9.2f}x"
        print(f"{label:<{width}} {med:>10.2f} {f'[{q25:.2f}, {q75:.2f}]':>16}{ratios}")
    med_floor = np.median(times["GEMMs alone (gvae matmul)"])
    print(f"(GEMM floor: {floor_flops / 1e9:.2f} GFLOP per step, {floor_flops / med_floor / 1e9:.0f} GFLOP/s; "
          f"ratios are medians of per-round ratios)")
    for note in notes:
        print(f"note: {note}")
    print()
    print("gvae Trainer.step by phase (timers around the callees, in the phased steps):")
    total = np.median(phases.sum(axis=1))
    header = f"{'phase':<20} {'median ms':>10} {'IQR ms':>16} {'share':>7}"
    print(header)
    print("-" * len(header))
    for k, name in enumerate(PHASES):
        med, q25, q75 = summary(phases[:, k])
        print(f"{name:<20} {med:>10.3f} {f'[{q25:.3f}, {q75:.3f}]':>16} {med / (total * 1e3):>7.1%}")
    print(f"{'total':<20} {total * 1e3:>10.3f}")
    print(f"forward+backward over the GEMM floor: {np.median(phases[:, 0]) / med_floor:.2f}x")
    print(f"gvae's products in one {first} step, as cut for {kernels.get_threads()} thread(s): {plans}")


if __name__ == "__main__":
    main(ARGS)
