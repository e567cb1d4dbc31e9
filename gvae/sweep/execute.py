"""Running a sweep on Dask distributed: each run that is not finished, or not evaluated after its last
training, becomes one Dask task; the task trains and evaluates its run with ``gvae train`` and ``gvae
eval``, one after the other in one process of its own (see :func:`run_job` for why).

Threads: a run's process uses ``threads`` threads for gvae's kernels, the BLAS and OpenMP (``--threads``), and the
Dask worker that waits on it runs one task at a time, so n workers use n x threads cores; on this
machine the default is cores // threads workers (a :class:`distributed.LocalCluster` of processes).

The sweep folder holds ``sweep.toml`` (the spec last run; an earlier, different one is kept as
``sweep.N.toml``), ``sweep.json`` (where the spec and the data were), ``failures.json`` (the runs whose
last attempt failed, and why), ``table.json`` and ``table.md``, and one run folder per run:
``<configuration>/seed-<seed>/`` (with ``sweep.log``, the output of its commands)."""
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..io.files import atomic_path, write_json
from ..kernels import available_cores
from ..training import rundir
from ..training.config import RESUMABLE
from . import state
from .runlog import READY_VARIABLE, commands_started
from .spec import load_spec
from .state import FAILURES_NAME, LOG_NAME, RECORD_NAME, SPEC_NAME

LOCK_NAME = ".gvae-sweep.lock"
# A local cluster's tasks only wait on a child process, yet with Dask's defaults (a statistical profiler
# sampling every 10 ms, an event-loop check every 20 ms, a system monitor with disk counters every 500 ms)
# each of its processes took a share of a core from the runs it trains; these settings quiet them
# (docs/howto/sweeps.md measures both).
LOCAL_CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
                        "distributed.admin.system-monitor.interval": "5s",
                        "distributed.admin.system-monitor.disk": False}
DASK_MISSING = 'gvae sweep runs on Dask distributed, which is not installed: pip install "gvae[dask]"'


@dataclasses.dataclass(frozen=True)
class Job:
    """What one Dask task does to one run: ``train`` and ``evaluate`` are the arguments of ``gvae train``
    and ``gvae eval`` (None: not needed); ``settings`` the [eval] settings to record with the evaluation."""
    id: str
    folder: str
    train: tuple
    evaluate: tuple
    settings: dict


def train_flags(config):
    """The ``gvae train`` flags that give ``config`` (every field that is not None), as argv words."""
    words = []
    for name, value in config.flat().items():
        if value is None or value == ():  # unset, or an empty list (no flag gives one)
            continue
        words.append("--" + name.replace("_", "-"))
        words += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
    return words


def _common(sweep):
    return (("--data", str(sweep.data.absolute())) if sweep.data is not None else ()) + (
        "--device", sweep.device, "--threads", str(sweep.threads), "--quiet")


def train_args(sweep, run, how):
    """``gvae train`` arguments that bring ``run`` on: ``how`` is "new", "resume" or "overwrite"."""
    extra = {"new": (), "resume": ("--resume",), "overwrite": ("--overwrite",)}[how]
    return ("train", "--out", str(run.folder.absolute()), *train_flags(run.config), *extra, *_common(sweep))


def eval_args(sweep, run):
    """``gvae eval`` arguments that evaluate ``run`` with the spec's [eval] settings."""
    words = []
    for key, value in sweep.eval.items():
        words += ["--" + key.replace("_", "-"), str(value)]
    return ("eval", str(run.folder.absolute()), *words, *_common(sweep))


# The run process of each run folder that a task of this (worker) process is waiting on, for
# :func:`interrupt_runs`.
_CHILDREN = {}


def interrupt_runs(folders):
    """Send SIGINT (Ctrl-C), once, to each run process of this process's tasks whose run folder is among
    ``folders``: it stops as gvae train and gvae eval stop on Ctrl-C, resumably, and its task ends.
    Returns how many of them are still running. A stopping sweep runs it on every worker until none is
    (:func:`_stop_runs`): Dask cannot cancel a task that is running, but the task only waits on its run."""
    import signal

    running = 0
    for folder in folders:
        child = _CHILDREN.get(str(folder))
        if child is None or child.poll() is not None:
            continue
        running += 1
        # Not before it answers Ctrl-C (runlog.READY_VARIABLE), and once: a second could cut its stop short.
        if child.gvae_ready.is_set() and not getattr(child, "gvae_interrupted", False):
            child.send_signal(signal.SIGINT)
            child.gvae_interrupted = True
    return running


def _run_command(commands, log):
    """Run ``python -P -m gvae.sweep_child PARENT COMMANDS`` (``commands``: argument lists of gvae commands,
    run one after the other in that one process) with its output appended to the file ``log``; returns
    (exit status, the index of the command that ended it, the last line written).

    ``-P``: ``python -m`` would put the working directory first on the import path, so a ``gvae/`` folder
    there (a checkout's parent, or one planted) would run instead of the installed gvae; with ``-P`` only
    the import path of the installation (site-packages, an editable install, ``PYTHONPATH``) is used.
    The child is registered for :func:`interrupt_runs` at once, and marked ready (``gvae_ready``) when it
    closes the pipe end named by ``runlog.READY_VARIABLE``: from then on it answers SIGINT."""
    command = [sys.executable, "-P", "-m", "gvae.sweep_child", str(os.getpid()),
               json.dumps([list(args) for args in commands])]
    folder = str(Path(log).parent)
    ready, told = os.pipe()  # the child closes ``told`` once it answers SIGINT: EOF here
    try:
        with open(log, "a") as f:
            start = f.tell()
            try:
                child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                         pass_fds=(told,), env={**os.environ, READY_VARIABLE: str(told)})
            finally:
                os.close(told)
            child.gvae_ready = threading.Event()
            _CHILDREN[folder] = child
            try:
                os.read(ready, 1)  # returns once the child has closed its end (or ended)
                child.gvae_ready.set()
                code = child.wait()
            finally:
                _CHILDREN.pop(folder, None)
    finally:
        os.close(ready)
    with open(log) as f:
        f.seek(start)
        lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    last = lines[-1] if lines else (f"killed by signal {-code}" if code < 0 else "no output")
    # The child writes a header before each command, in order: the last one written ran last.
    return code, max(commands_started(lines, commands) - 1, 0), last


def run_job(job):
    """The Dask task of one run: train it (when ``job.train``), then evaluate it and record the evaluation
    (when ``job.evaluate``). Returns a dict: id, ok, seconds, and on failure the failed command, its exit
    status and last line (gvae's message), or on success the evaluation's result.

    Both commands run in one process of their own (:mod:`gvae.sweep_child`): its ``--threads`` set gvae's,
    the BLAS's and OpenMP's thread counts before NumPy loads there (the worker's own NumPy is loaded
    already); a crash or a leak stays in that process; the run is trained exactly as ``gvae train``
    trains it (its lock, atomic checkpoints, exit statuses); and it stops, resumably, when its worker
    dies."""
    folder = Path(job.folder)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / LOG_NAME
    start = time.perf_counter()
    commands = [args for args in (job.train, job.evaluate) if args is not None]
    code, failed, last = _run_command(commands, log)
    if code != 0:
        return {"id": job.id, "ok": False, "command": commands[failed][0], "returncode": code, "message": last,
                "log": str(log), "seconds": time.perf_counter() - start}
    if job.evaluate is not None:
        state.record_evaluation(folder, job.settings)
    return {"id": job.id, "ok": True, "seconds": time.perf_counter() - start,
            "summary": state.read_json(folder / "summary.json"),
            "result": state.read_json(folder / "eval.json") if job.evaluate is not None else None}


def _listed(items, limit=3):
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _count(n, noun):
    """'1 seed', '2 seeds'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def plan(sweep, overwrite=False):
    """(jobs, counts, damaged) for the runs of ``sweep`` as their folders stand. A run trained with a
    configuration that differs from the spec in more than the settings a resume may change
    (``RESUMABLE``), or on other data, is refused (ValueError listing them), or with ``overwrite`` trained
    again from its start. ``damaged``: {run id: what is wrong} of the runs whose files cannot be read
    (metrics.jsonl, summary.json, config.json or the checkpoint's meta); they get no job, and the sweep
    goes on with the others."""
    from ..training.runfiles import resume_conflicts

    previous = state.read_json(sweep.out / RECORD_NAME)
    data = None if sweep.data is None else str(sweep.data.absolute())
    other_data = isinstance(previous, dict) and previous.get("data") != data
    jobs, counts, conflicts, damaged = [], {"finished": 0, "resume": 0, "new": 0, "overwrite": 0, "evaluate": 0}, [], {}
    for run in sweep.runs:
        progress = state.training(run.folder, run.config)
        if progress.state == "damaged":
            damaged[run.id] = progress.problem
            continue
        how = {"new": "new", "unstarted": "overwrite", "unfinished": "resume", "finished": None}[progress.state]
        if progress.state in ("unfinished", "finished"):
            try:
                differ = [f"{name} {value} (the run's: {old})" for name, value, old in
                          resume_conflicts(run.folder, run.config.flat())]
            except ValueError as e:  # its config.json or checkpoint cannot be read
                damaged[run.id] = str(e)
                continue
            if other_data:
                differ.append(f"data {data} (the sweep's: {previous.get('data')})")
            if differ and not overwrite:
                conflicts.append(f"{run.id}: {', '.join(differ)}")
            how = "overwrite" if differ else how
        counts[how or "finished"] += 1
        train = None if how is None else train_args(sweep, run, how)
        evaluate = sweep.eval is not None and (
            train is not None or state.evaluation(run.folder, sweep.eval, progress.summary)[0] != "current")
        counts["evaluate"] += evaluate
        if train is not None or evaluate:
            jobs.append(Job(run.id, str(run.folder), train, eval_args(sweep, run) if evaluate else None, sweep.eval))
    if conflicts:
        may = ", ".join(RESUMABLE)
        raise ValueError(f"{sweep.out} holds {_count(len(conflicts), 'run')} that the spec describes differently: "
                         f"{_listed(conflicts)}. Only {may} may change in a sweep's runs: give another sweep "
                         "folder, or --overwrite to train these runs again from their start")
    return jobs, counts, damaged


def _check_folder(out):
    """Refuse a sweep folder that is a file, or a non-empty folder that holds no sweep."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"the sweep folder {out} exists and is not a folder")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()) and not (out / SPEC_NAME).is_file():
        raise ValueError(f"{out} is not empty and holds no sweep ({SPEC_NAME}); give a new or empty folder")


def _record_spec(sweep):
    """Write the spec into the sweep folder; a different earlier one is kept as sweep.N.toml."""
    target = sweep.out / SPEC_NAME
    if target.is_file() and target.read_text() != sweep.text:
        n = 1 + sum(1 for _ in sweep.out.glob("sweep.*.toml"))
        os.replace(target, sweep.out / f"sweep.{n}.toml")
    if not target.is_file():
        with atomic_path(target) as tmp:
            tmp.write_text(sweep.text)
    write_json(sweep.out / RECORD_NAME, {"spec": str(sweep.file.absolute()),
                                         "data": None if sweep.data is None else str(sweep.data.absolute())})


def _others(sweep):
    """Run folders in the sweep folder that the spec does not name (they are left as they are)."""
    named = {run.folder for run in sweep.runs}
    return sorted(str(p.relative_to(sweep.out)) for p in sweep.out.glob("*/seed-*")
                  if p.is_dir() and p not in named)


def _dask():
    try:
        import distributed
    except ImportError:
        raise RuntimeError(DASK_MISSING) from None
    return distributed


CONNECT_SECONDS = 30  # for a scheduler to answer, however it fails to


def _connect(distributed, scheduler, workers):
    """(client, the LocalCluster it made or None) for ``scheduler`` (an address, or a scheduler file),
    else for a new LocalCluster of ``workers`` processes of one thread each."""
    if scheduler is None:
        import dask

        # The workers are started with SIGINT ignored (a Python started so keeps it ignored): Ctrl-C in a
        # terminal reaches the whole process group, and a worker would die of it with a traceback
        # mid-shutdown. The driver stops the runs and closes the workers itself; each run's process
        # answers Ctrl-C again (gvae.sweep_child). (A Ctrl-C in the second the cluster takes to start is
        # not seen: SIGINT is ignored here too meanwhile.)
        import signal

        main = threading.current_thread() is threading.main_thread()  # (only it may set a handler)
        before = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            with dask.config.set(LOCAL_CLUSTER_CONFIG):  # read by the scheduler, and passed to each worker
                # No dashboard; the scheduler's HTTP server (its health and metrics routes) on a free port:
                # on Dask's fixed 8787, a second cluster of this machine (another sweep's, the user's)
                # warned and left a socket of its try open.
                cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                   dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"})
        finally:
            if main:
                signal.signal(signal.SIGINT, before)
        return distributed.Client(cluster), cluster
    address = _scheduler_address(scheduler)
    _check_scheduler(distributed, address, scheduler)
    try:
        return distributed.Client(address=address, timeout=f"{CONNECT_SECONDS}s"), None
    except Exception as e:  # noqa: BLE001 - whatever the other end did, one line naming it
        raise RuntimeError(f"cannot connect to the Dask scheduler {scheduler}: {type(e).__name__}: {e}") from None


def _scheduler_address(scheduler):
    """The address of ``--scheduler``: the text itself, or the ``address`` of the scheduler file it names
    (Dask's JSON); RuntimeError naming the file when it is not one."""
    path = Path(scheduler)
    if not path.is_file():
        return scheduler if "://" in scheduler else f"tcp://{scheduler}"
    try:
        address = json.loads(path.read_text(encoding="utf-8"))["address"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        address = None
    if not isinstance(address, str) or "://" not in address:
        raise RuntimeError(f"{scheduler} is not a Dask scheduler file (expected JSON with an \"address\" such as "
                           "\"tcp://host:8786\", as dask scheduler --scheduler-file writes)")
    return address


def _check_scheduler(distributed, address, given):
    """Ask ``address`` who it is within CONNECT_SECONDS, in Dask's own protocol (its handshake, then the
    ``identity`` call every Dask server answers): a closed port, a server that says nothing (Dask's client
    would wait for its handshake forever) or that speaks another protocol (Dask's frame reader would take
    its bytes for a length: a MemoryError of exbibytes) is a RuntimeError of one line, before a client is
    made."""
    import asyncio

    async def identity():
        comm = await distributed.comm.connect(address, timeout=CONNECT_SECONDS)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    try:
        answer = asyncio.run(asyncio.wait_for(identity(), CONNECT_SECONDS))
    except (asyncio.TimeoutError, TimeoutError):
        raise RuntimeError(f"no Dask scheduler answered at {given} within {CONNECT_SECONDS} s") from None
    except OSError as e:
        raise RuntimeError(f"cannot connect to the Dask scheduler {given}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a reply Dask cannot read: another kind of server
        raise RuntimeError(f"{given} does not answer as a Dask scheduler ({type(e).__name__})") from None
    if not (isinstance(answer, dict) and answer.get("type") == "Scheduler"):
        kind = answer.get("type") if isinstance(answer, dict) else None
        raise RuntimeError(f"{given} answers, but is not a Dask scheduler" + (f" (a {kind})" if kind else ""))


FOLLOW_SECONDS = 5.0  # how often the sweep's bar reads the runs' epochs


def epochs_done(sweep):
    """The epochs the runs of ``sweep`` have trained, read from their folders: a finished run (all its
    epochs, or stopped early by its patience) counts all of its configured epochs, so the total is
    reached when every run is trained; a damaged run counts none."""
    done = 0
    for run in sweep.runs:
        progress = state.training(run.folder, run.config)
        done += run.config.epochs if progress.state == "finished" else min(progress.epochs, run.config.epochs)
    return done


_BAR_LOCK = threading.Lock()  # the watcher thread and the loop over finished runs both move the bar


def _show_epochs(sweep, bar):
    """Move ``bar`` to :func:`epochs_done` (tqdm's rate and estimate then follow the epochs)."""
    with _BAR_LOCK:
        done = epochs_done(sweep)
        if done != bar.n:
            bar.update(done - bar.n)


def _follow_epochs(sweep, bar, ended):
    """Until ``ended`` is set, :func:`_show_epochs` every FOLLOW_SECONDS."""
    while not ended.wait(FOLLOW_SECONDS):
        _show_epochs(sweep, bar)


def _line(result):
    if not result["ok"]:
        return (f"FAILED {result['id']}: gvae {result['command']} exit {result['returncode']}: {result['message']} "
                f"(log: {result['log']})")
    summary, evaluation = result.get("summary") or {}, result.get("result")
    text = f"done   {result['id']}: {summary.get('epochs')} epochs"
    if evaluation:
        text += (f", test ELBO {evaluation['test_elbo']:.3f}, log p(x) {evaluation['test_log_likelihood']:.3f} "
                 f"(K={evaluation['iw_samples']}, {evaluation['n_test']} images)")
    return text + f", {result['seconds']:.0f} s"


def run_sweep(spec_file, out=None, scheduler=None, workers=None, overwrite=False):
    """Bring every run of the spec up to date on Dask, then write the table; returns the exit status
    (0, or 3 when some run failed). ``out`` replaces the spec's sweep folder; ``scheduler`` is the
    address (or scheduler file) of a running Dask cluster, else a LocalCluster of ``workers`` processes
    (default cores // threads) runs the sweep here."""
    from .table import write_curves, write_table

    sweep = load_spec(spec_file, out)
    distributed = _dask()
    if scheduler is not None and workers is not None:
        raise ValueError("--workers sets the size of the local cluster; with --scheduler the cluster's own "
                         "workers run the sweep")
    if sweep.data is not None and not sweep.data.exists():
        raise FileNotFoundError(f"{sweep.file}: [sweep] data: there is no {sweep.data}")
    if scheduler is None:  # what every run here would need, checked once before any work
        from ..kernels import device_module
        device_module(sweep.device)
    _check_folder(sweep.out)
    with rundir.folder_lock(sweep.out, LOCK_NAME, "sweep folder", command="gvae sweep"):
        jobs, counts, damaged = plan(sweep, overwrite)
        for run_id, problem in damaged.items():
            print(f"skipped {run_id}: {problem}; mend or remove its folder, and run gvae sweep again", flush=True)
        _record_spec(sweep)
        others = _others(sweep)
        if others:
            print(f"note: {_count(len(others), 'run folder')} in {sweep.out} not in the spec, left as they are: "
                  f"{_listed(others)}")
        # A failure is kept while its run still has work to do (it is not, once it was mended by hand).
        failures = {k: v for k, v in state.failures_of(sweep.out).items() if k in {job.id for job in jobs}}
        write_json(sweep.out / FAILURES_NAME, failures)
        if jobs and scheduler is None and sweep.data is None:
            from ..io.mnist import fetch_mnist
            fetch_mnist()  # once here, not by every run at once
        print(f"sweep {sweep.file}: {_count(len(sweep.runs), 'run')} ({_count(len(sweep.configs), 'configuration')} x "
              f"{_count(len(sweep.seeds), 'seed')}) in {sweep.out}: {counts['finished']} trained, {counts['resume']} to "
              f"resume, {counts['new'] + counts['overwrite']} to start, {counts['evaluate']} to evaluate", flush=True)
        if jobs:
            failures = _execute(distributed, sweep, jobs, scheduler, workers, failures)
        _, markdown = write_table(sweep.out)
        print(markdown, end="")
        write_curves(sweep.out)
    failed = [run.id for run in sweep.runs if run.id in failures]
    if failed or damaged:
        said = [f"{len(failed)} of {_count(len(sweep.runs), 'run')} failed ({_listed(failed)}); see {sweep.out / FAILURES_NAME}"] \
            if failed else []
        said += [f"{_count(len(damaged), 'damaged run')} skipped ({_listed(list(damaged))})"] if damaged else []
        print("gvae: " + "; ".join(said), file=sys.stderr)
        return 3
    return 0


STOP_SECONDS = 10.0  # for the workers to answer that they have interrupted a stopping sweep's runs


def _stop_runs(client, jobs, futures):
    """Stop the sweep's work on ``client``'s cluster (a local one or one that outlives the sweep): cancel
    its tasks (``futures``), so that none that waits starts, and interrupt the run processes of ``jobs``
    on every worker until none runs: each stops resumably at once and its worker is free, so a local
    cluster closes without waiting for busy workers (4 s, then killed), and a cluster elsewhere trains
    no run of a sweep that has stopped. The sweep waits STOP_SECONDS at most (a worker that is gone may
    hold a request for Dask's connect timeout of 30 s): a run it could not reach stops when its worker
    ends."""
    def ask():
        client.cancel(list(futures))
        folders = [job.folder for job in jobs]
        while sum(client.run(interrupt_runs, folders, on_error="ignore").values()):
            time.sleep(0.05)

    why = _within(STOP_SECONDS, ask)
    if why:
        print(f"gvae: could not ask every worker to stop its runs ({why}); a run in flight stops when its "
              "worker ends", file=sys.stderr)


def _within(seconds, ask):
    """Call ``ask()`` (a request to the cluster) in a thread of its own, waiting ``seconds`` at most; returns
    None once it has returned, else why not (its exception, or that it did not answer in time)."""
    problem = []

    def call():
        try:
            ask()
        except Exception as e:  # noqa: BLE001 - the sweep is stopping anyway: say why, and stop
            problem.append(f"{type(e).__name__}: {e}")

    asking = threading.Thread(target=call, daemon=True)
    asking.start()
    asking.join(seconds)
    if problem:
        return problem[0]
    return f"no answer within {seconds:g} s" if asking.is_alive() else None


def silence_logging():
    """Run on each worker of the sweep's own cluster just before the sweep closes it: the worker process
    ends with the close, and what Dask logs meanwhile is noise of the close's order (a heartbeat that
    meets the scheduler already closed printed "Failed to communicate with scheduler during heartbeat"
    with a traceback, now and then, after a run had stopped cleanly)."""
    import logging

    logging.disable(logging.CRITICAL)


def _execute(distributed, sweep, jobs, scheduler, workers, failures):
    """Run the jobs as Dask tasks, reporting each as it ends; returns the updated failures."""
    from ..training.progress import progress_bar

    if scheduler is None:
        workers = min(workers or max(1, available_cores() // sweep.threads), len(jobs))
        print(f"on a local Dask cluster: {_count(workers, 'worker')} x {_count(sweep.threads, 'thread')} per run",
              flush=True)
    client, cluster = _connect(distributed, scheduler, workers)
    # Progress in epochs, read from the runs' own files (each run trains --quiet in a process of its own):
    # a bar over the runs alone would stand still for the hours a run takes. Off a terminal, no bar: the
    # line per run as it ends says it there.
    bar = progress_bar(True, sum(run.config.epochs for run in sweep.runs), "sweep", unit="epoch",
                       initial=epochs_done(sweep), lines=False, dynamic_ncols=True)
    ended = threading.Event()
    watcher = threading.Thread(target=_follow_epochs, args=(sweep, bar, ended), daemon=True)
    watcher.start()
    runs_done = len(sweep.runs) - len(jobs)
    bar.set_postfix_str(f"runs {runs_done}/{len(sweep.runs)}")
    futures = {}
    try:
        futures.update((client.submit(run_job, job, pure=False), job) for job in jobs)
        for future in distributed.as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except Exception as e:  # the task itself failed, e.g. its workers died (KilledWorker)
                result = {"id": job.id, "ok": False, "command": "train" if job.train else "eval",
                          "returncode": None, "message": f"{type(e).__name__}: {e}",
                          "log": str(Path(job.folder) / LOG_NAME), "seconds": 0.0}
            if result["ok"]:
                failures.pop(job.id, None)
            else:
                failures[job.id] = {k: result[k] for k in ("command", "returncode", "message", "log")}
            write_json(sweep.out / FAILURES_NAME, failures)
            runs_done += 1
            bar.set_postfix_str(f"runs {runs_done}/{len(sweep.runs)}", refresh=False)
            _show_epochs(sweep, bar)
            bar.write(_line(result), file=sys.stdout)
            sys.stdout.flush()  # a line per run as it ends, also into a pipe or a log file
    except BaseException:  # Ctrl-C, SIGTERM or a failure of the driver: the runs in flight stop now
        _stop_runs(client, jobs, futures)
        raise
    finally:
        ended.set()
        watcher.join()
        bar.close()
        if cluster is not None:  # (no answer in time: the close goes on, and a worker may say so)
            _within(STOP_SECONDS, lambda: client.run(silence_logging, on_error="ignore"))
        client.close()
        if cluster is not None:
            cluster.close()
    return failures
