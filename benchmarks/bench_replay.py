"""The training step replayed from its native record against the same step on the tape, in one process and
on MNIST's own batches (where the products' data-dependent decisions come out as in a real run), blocks of
steps alternated so that machine noise hits both alike; and how often a replay found a decision changed.

    python benchmarks/bench_replay.py --threads 1 --hidden 1024 1024 1024 --latent 40 \\
        --task vcca,activation=relu,dropout=0.2,input_dropout=0.2,code_dropout=0.2,samples=5,decoder_draws=own

``--task`` as in bench_tasks.py (a task and its TrainConfig settings after commas). One trainer: its
records are made and checked against the tape in a warm-up (up to ``--warmup`` steps, ending once the key
holds its most records, all trusted: a record made or checked inside a timed block would charge the tape's
runs to the replay), then each round runs ``--block`` batches replayed and
``--block`` on the tape (gvae's capture switched off for them), in alternating order (``--block 1``: the
two ways alternate step by step); within them the record's runs and the tape's forward and backward are
also timed alone, apart from the rest of the step (the noise and dropout masks, Adam). The replay column
counts the steps a record held for; a failed attempt is a record whose check stopped it (its time is
spent, and the next record or the tape follows). ``--split`` then runs one batch's forward and backward
three ways in rotation, on the same inputs: the record's native run, the record's tasks called one by one
from Python (the same kernels, no native loop), and the tape (NumPy's elementwise operators outside a
recording), which tells the native loop's cost from that of the kernels the record holds. ``--tasks`` then
times each task of the first record alone (called from Python, median of seven calls) and sums the times
by kernel: a product by its shapes and layouts (N: rows in memory order, T: transposed), any other task by
its kernel's name. ``--trial`` runs the steps instead with gvae's own trial of the two ways (on the CPU,
the step times both ways over its first steps and goes on with the faster) and prints what it chose.
"""
import os
import statistics
import tempfile
import time

from gvae.io.arguments import ArgumentParser


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="generate", metavar="NAME[,K=V...]", help="the task and its settings")
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--threads", type=int, default=1, help="gvae's threads; with 1 the process is pinned to one core")
    p.add_argument("--rounds", type=int, default=8, help="rounds of a replayed and a taped block")
    p.add_argument("--block", type=int, default=5, help="steps per block")
    p.add_argument("--warmup", type=int, default=40, help="most steps of the warm-up")
    p.add_argument("--split", action="store_true", help="also time the record natively, its tasks from Python, "
                   "and the tape, on one batch")
    p.add_argument("--tasks", action="store_true", help="also time each task of the record alone, summed by kernel")
    p.add_argument("--trial", action="store_true", help="only train with gvae's own trial of the two ways on, "
                   "and print which way it chose")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import gvae.models  # noqa: F401  (registers the literature models' tasks)
    from gvae import kernels
    from gvae.io.mnist import load_mnist
    from gvae.kernels.cpu import capture as cpu_capture
    from gvae.training import TrainConfig, Trainer
    from gvae.training.captured_step import MAX_RECORDS
    from bench_tasks import settings_of  # benchmarks/, beside this script
    from cpu_model import cpu_model

    kernels.set_threads(args.threads)
    name, extra = settings_of(args.task)
    needed = 2 * args.rounds * args.block + args.warmup
    config = TrainConfig.of(**{"task": name, "latent": args.latent, "hidden": tuple(args.hidden),
                               "batch_size": args.batch, "limit": needed * args.batch, "seed": 0, **extra})
    attempts = {"held": [], "stopped": []}
    run = cpu_capture.CpuRecord.run

    def timed(record):  # every run of a record, timed, by whether its decisions held
        start = time.perf_counter()
        held = run(record)
        attempts["held" if held else "stopped"].append(time.perf_counter() - start)
        return held
    cpu_capture.CpuRecord.run = timed
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, load_mnist(None), os.path.join(folder, "run"), progress=False, quiet=True)
        batches = list(trainer.task.batches(trainer.inputs["train"], args.batch, trainer.epoch_generator(0)))
        if args.trial:
            return _trial(trainer, batches)
        trainer.captured.trial_steps = 0  # (this script times both ways itself: no trial of gvae's own)
        capture = trainer.captured.capture
        warm = 0
        while warm < args.warmup and not (len(trainer.captured.records) == MAX_RECORDS
                                          and all(r.trusted for r in trainer.captured.records)):
            trainer.step(batches[warm], 1.0)
            warm += 1
        batches = batches[warm:]
        attempts["held"].clear(), attempts["stopped"].clear()
        tape, taped_calls = trainer.captured._tape, []

        def timed_tape(step_args):  # the tape's forward and backward within a taped step, timed
            start = time.perf_counter()
            out = tape(step_args)
            taped_calls.append(time.perf_counter() - start)
            return out
        trainer.captured._tape = timed_tape
        times = {"replayed": [], "taped": []}
        replays = trainer.captured.replays
        for r in range(args.rounds):
            for way in ("replayed", "taped") if r % 2 == 0 else ("taped", "replayed"):
                trainer.captured.capture = capture if way == "replayed" else None
                first = args.block * (2 * r + (way == "taped"))
                start = time.perf_counter()
                for b in batches[first:first + args.block]:
                    trainer.step(b, 1.0)
                times[way].append((time.perf_counter() - start) / args.block)
        replays = trainer.captured.replays - replays
        trainer.captured._tape = tape
        recorded = bool(trainer.captured.records)  # (none: the key was refused, see refused below)
        split = _split(trainer) if args.split and recorded else None
        by_kernel = _by_kernel(trainer) if args.tasks and recorded else None
    stopped = attempts["stopped"]
    records = trainer.captured.records
    for _, why in trainer.captured.refused:
        print(f"# the step stayed on the tape: {why}")
    print(f"# {cpu_model()}; {args.threads} thread(s); --task {args.task}; hidden {args.hidden}, latent "
          f"{args.latent}, batch {args.batch}; {len(records)} record(s), {sum(r.trusted for r in records)} trusted "
          f"after a warm-up of {warm} steps")
    print(f"replayed {1e3 * statistics.median(times['replayed']):.1f} ms a step, taped "
          f"{1e3 * statistics.median(times['taped']):.1f}: replayed / taped "
          f"{statistics.median(a / b for a, b in zip(times['replayed'], times['taped'])):.2f} (median of rounds)")
    if attempts["held"] and taped_calls:  # (none held: the key stayed on the tape, refused)
        print(f"within those steps: the record's runs that held {1e3 * statistics.median(attempts['held']):.1f} "
              f"ms, the tape's forward and backward {1e3 * statistics.median(taped_calls):.1f} (medians)")
    print(f"{replays} of {args.rounds * args.block} replayed steps from a record; {len(stopped)} runs stopped at a "
          f"changed decision, {1e3 * sum(stopped):.1f} ms in all" + (
              f" ({1e3 * statistics.median(stopped):.2f} ms each)" if stopped else ""))
    if split:
        print("one batch's forward and backward, ms (nine rounds of three runs each way): " + ", ".join(
            f"{way} {1e3 * statistics.median(ts):.1f}" for way, ts in split.items())
              + "; native / tasks from Python "
              f"{statistics.median(a / b for a, b in zip(split['native'], split['tasks'])):.3f},"
              f" native / tape {statistics.median(a / b for a, b in zip(split['native'], split['tape'])):.3f}")
    if by_kernel:
        total = sum(seconds for _, seconds in by_kernel.values())
        products = sum(seconds for name, (_, seconds) in by_kernel.items() if name.startswith("product"))
        print(f"the record's tasks one by one: {1e3 * total:.1f} ms, of which products {1e3 * products:.1f} "
              f"({100 * products / total:.0f}%); by kernel, ms (tasks):")
        for name, (count, seconds) in sorted(by_kernel.items(), key=lambda item: -item[1][1]):
            print(f"{1e3 * seconds:9.2f} ({count:3d})  {name}")


def _trial(trainer, batches):
    """Steps as training takes them, until the step's trial (gvae.training.captured_step) has chosen."""
    from cpu_model import cpu_model
    captured = trainer.captured
    steps = 0
    for b in batches:
        trainer.step(b, 1.0)
        steps += 1
        if captured.refused or (captured.records and captured.records[0].trusted and captured.trial is None):
            break
    chose = "; ".join(why for _, why in captured.refused) or (
        f"the replay ({captured.replays} of {steps} steps replayed)" if captured.records else "no choice yet")
    print(f"# {cpu_model()}; after {steps} steps, {chose}")


def _kernel_of(task):
    """A task's row in --tasks: a product by its shapes and layouts, another task by its kernel's name."""
    from gvae.kernels.matmul_cpu import _Product
    if isinstance(task, _Product):
        order = "".join("N" if x.strides[1] <= x.strides[0] else "T" for x in (task.a, task.b))
        return f"product {task.a.shape} @ {task.b.shape} {order}"
    entry = getattr(task, "entry", None)
    return entry.kernel.py_func.__name__ if entry is not None else type(task).__name__


def _by_kernel(trainer):
    """{kernel: (tasks, seconds)} of the first record's tasks, each timed alone (median of seven calls)."""
    record = trainer.captured.records[0]
    tasks = [task for group in record.record.program._kept for task in group]
    times = [[] for _ in tasks]
    for _ in range(7):
        for task, spent in zip(tasks, times):
            start = time.perf_counter()
            task()
            spent.append(time.perf_counter() - start)
    by = {}
    for task, spent in zip(tasks, times):
        kernel = _kernel_of(task)
        count, seconds = by.get(kernel, (0, 0.0))
        by[kernel] = count + 1, seconds + statistics.median(spent)
    return by


def _split(trainer):
    """Seconds of the first record's native run, of its tasks called in order from Python, and of the tape,
    on the record's inputs, nine rounds of three each way in rotating order."""
    record = trainer.captured.records[0]
    tasks = [task for group in record.record.program._kept for task in group]
    ways = {"native": record.record.run, "tasks": lambda: [task() for task in tasks],
            "tape": lambda: trainer.captured._tape(record.args)}
    times = {way: [] for way in ways}
    names = list(ways)
    for r in range(9):
        for way in names[r % 3:] + names[:r % 3]:
            start = time.perf_counter()
            for _ in range(3):
                ways[way]()
            times[way].append((time.perf_counter() - start) / 3)
    return times


if __name__ == "__main__":
    main()
