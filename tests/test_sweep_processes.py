"""A sweep's processes: a run stops resumably when the worker that started it dies, SIGTERM stops a sweep
as Ctrl-C does, a sweep killed mid-way and resumed gives the table of an uninterrupted one, scheduler
addresses and files of the wrong kind, damaged runs, and the progress bar."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gvae.cli import main
from gvae.io.files import write_json, write_jsonl
from gvae.sweep import state
from gvae.sweep.execute import _record_spec, plan
from gvae.sweep.spec import load_spec
from gvae.sweep.table import build_table
from gvae.training import TrainConfig
from tests.sweep_helpers import (SPEC, write_spec, edit, fit, fake_evaluation, fake_run, wait_for, lock_is_free,
                                 environment, compile_for)


@pytest.mark.slow
@pytest.mark.parametrize("sigint", ["default", "ignored"])  # ignored: started by `gvae sweep ... &` in a script
def test_a_run_stops_resumably_when_its_parent_dies(tmp_path, data_file, sigint):
    out = tmp_path / "run"
    args = ["train", "--data", str(data_file), "--limit", "80", "--latent", "3", "--hidden", "8", "--batch-size",
            "20", "--epochs", "100000", "--quiet", "--threads", "1", "--out", str(out)]
    parent = ("import json, os, subprocess, sys; p = subprocess.Popen([sys.executable, '-m', 'gvae.sweep_child', "
              "str(os.getpid()), json.dumps([sys.argv[1:]])]); print(p.pid, flush=True); p.wait()")
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint == "ignored" else None
    proc = subprocess.Popen([sys.executable, "-c", parent, *args], stdout=subprocess.PIPE, text=True,
                            env=environment(), cwd=tmp_path, preexec_fn=ignore)
    proc.stdout.readline()
    wait_for(lambda: (out / "checkpoint.npz").is_file(), 120, "the first epoch")
    proc.kill()
    proc.wait()
    proc.stdout.close()
    wait_for(lambda: lock_is_free(out), 30, "the orphaned run to stop")
    epochs = len((out / "metrics.jsonl").read_text().splitlines())
    assert 1 <= epochs < 100000
    assert state.training(out, TrainConfig(epochs=100000)).state == "unfinished"  # resumable, not finished


def kill_group(proc):
    """SIGKILL to the process group of ``proc`` (a sweep started in a session of its own), if any is left."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def answering_ctrl_c():
    """For preexec_fn: SIGINT at its default, as in a terminal, whatever the test run's own (a test run
    started in the background by a non-interactive shell has it ignored, and its children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_stopped_resumably(out, runs, timeout=60):
    """Each run of ``runs`` in the sweep folder ``out`` stops within ``timeout`` s (its lock is free), and
    one that trained an epoch is unfinished: resumable (their spec asks 100,000 epochs)."""
    for run in runs:
        wait_for(lambda: not (out / run.id).is_dir() or lock_is_free(out / run.id), timeout, f"{run.id} to stop")
        if (out / run.id / "checkpoint.npz").is_file():
            assert state.training(out / run.id, TrainConfig(epochs=100000)).state == "unfinished"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_sigterm_and_ctrl_c_stop_a_sweep_and_its_runs(tmp_path, data_file, how):
    """kill, a batch system's time limit (SIGTERM to the driver; its default ended the driver at once, in
    silence), and Ctrl-C in a terminal (SIGINT to the whole process group): the driver stops the runs and
    closes its cluster at once, its runs stop resumably, the user is told how to go on, and no worker
    prints a traceback."""
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")
    spec = write_spec(tmp_path, edit(edit(SPEC, "tiny.npz", str(data_file)), "epochs = 2", "epochs = 100000"))
    out = tmp_path / "sweep"
    compile_for(spec, tmp_path / "compiled")  # the runs answer Ctrl-C from their start
    proc = sweep_process(spec, out)
    try:
        wait_for(lambda: any((out / run.id / "checkpoint.npz").is_file() for run in load_spec(spec).runs)
                 or proc.poll() is not None, 300, "a run's first epoch")
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        kill_group(proc)
    said = "stopped by SIGTERM" if how == "sigterm" else "interrupted"
    assert proc.returncode == (143 if how == "sigterm" else 130), err
    assert f"gvae: {said}; the same gvae sweep command goes on from where the sweep stopped" in err
    # No worker died of Ctrl-C with a traceback, and none was busy at the close (Dask then waited 4 s
    # and killed it, saying "still alive", or cancelled a task mid-run, saying "cancelled").
    assert not any(word in err for word in ("Traceback", "still alive", "cancelled")), err
    assert_stopped_resumably(out, load_spec(spec).runs)


def test_stopping_runs_cancels_the_tasks_and_interrupts_until_none_runs(monkeypatch, capsys):
    """_stop_runs cancels the sweep's tasks (none that waits may start), then runs interrupt_runs with the
    jobs' folders on every worker until no run is left running; a scheduler that does not answer (a lost
    worker waits out Dask's connect timeout) or fails is said in one line, within STOP_SECONDS."""
    from gvae.sweep import execute
    jobs = [execute.Job(f"{c}/seed-0", f"/runs/{c}/seed-0", (), None, {}) for c in "ab"]
    calls, release = [], threading.Event()

    class Client:
        def __init__(self, behaviour, running=(2, 1, 0)):
            self.behaviour, self.running = behaviour, list(running)

        def cancel(self, futures):
            calls.append(("cancel", futures))

        def run(self, function, folders, on_error):
            calls.append((function, folders, on_error))
            if self.behaviour == "hang":
                release.wait(30)
            elif self.behaviour == "fail":
                raise OSError("scheduler gone")
            return {"tcp://worker": self.running.pop(0)}

    execute._stop_runs(Client("answer"), jobs, {"future": jobs[0]})
    asked = (execute.interrupt_runs, ["/runs/a/seed-0", "/runs/b/seed-0"], "ignore")
    assert calls == [("cancel", ["future"]), asked, asked, asked]  # until no run is left running
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(execute, "STOP_SECONDS", 0.2)
    start = time.monotonic()
    execute._stop_runs(Client("hang"), jobs, {})
    release.set()
    assert time.monotonic() - start < 5
    assert "could not ask every worker to stop its runs (no answer within 0.2 s)" in capsys.readouterr().err
    execute._stop_runs(Client("fail"), jobs, {})
    assert "(OSError: scheduler gone); a run in flight stops when its worker ends" in capsys.readouterr().err


def test_interrupt_runs_signals_the_named_folders_running_processes_once(tmp_path):
    from gvae.sweep import execute
    # a: a run that stops on Ctrl-C; b: one not named; c: one that has ended; d: one slow to stop
    code = {"a": "import time; time.sleep(60)", "b": "import time; time.sleep(60)", "c": "pass",
            "d": "import signal, time; signal.signal(signal.SIGINT, lambda *a: open('d-int', 'a').write('.')); "
                 "open('d-ready', 'w').close(); time.sleep(60)"}
    procs = {name: subprocess.Popen([sys.executable, "-c", text], cwd=tmp_path, preexec_fn=answering_ctrl_c)
             for name, text in code.items()}
    for proc in procs.values():  # each answers Ctrl-C (as a run's process says by closing its pipe)
        proc.gvae_ready = threading.Event()
        proc.gvae_ready.set()
    try:
        procs["c"].wait()
        wait_for(lambda: (tmp_path / "d-ready").is_file(), 60, "d's handler")
        execute._CHILDREN.update({str(tmp_path / name): proc for name, proc in procs.items()})
        named = [tmp_path / "a", tmp_path / "c", tmp_path / "d", tmp_path / "unknown"]
        assert execute.interrupt_runs(named) == 2  # a and d were running
        assert procs["a"].wait(timeout=30) != 0  # SIGINT: KeyboardInterrupt in the sleeper
        assert execute.interrupt_runs(named) == 1  # d runs on, and is not signalled again
        wait_for(lambda: (tmp_path / "d-int").is_file(), 30, "d's handler to run")
        assert (tmp_path / "d-int").read_text() == "." and procs["b"].poll() is None
    finally:
        for name, proc in procs.items():
            execute._CHILDREN.pop(str(tmp_path / name), None)
            proc.kill()
            proc.wait()



_INTERRUPT_AT_ONCE = """
import json, pathlib, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a sweep's worker has it, and its run's process inherits
from gvae.sweep import execute
log = sys.argv[2]
folder = str(pathlib.Path(log).parent)
ended = {}
task = threading.Thread(target=lambda: ended.update(code=execute._run_command([json.loads(sys.argv[1])], log)[0]))
task.start()
while folder not in execute._CHILDREN:
    time.sleep(0.001)
start = time.perf_counter()
while execute.interrupt_runs([folder]) and time.perf_counter() - start < 60:
    time.sleep(0.01)
task.join(60)
print(ended.get("code"), time.perf_counter() - start)
"""


@pytest.mark.slow
def test_a_run_interrupted_the_moment_it_starts_stops(tmp_path, data_file):
    """A stopping sweep asks its runs to stop right after one started: the run's process began with SIGINT
    ignored (as its worker has it), so a SIGINT before it installed its handler was lost and the run
    trained on, until its worker was killed 14 s later. The worker now waits for the run to say it
    answers Ctrl-C (it closes a pipe), then interrupts it: it stops at once."""
    out = tmp_path / "run"
    out.mkdir()
    args = ["train", "--data", str(data_file), "--limit", "80", "--latent", "3", "--hidden", "8", "--batch-size",
            "20", "--epochs", "100000", "--quiet", "--threads", "1", "--out", str(out)]
    done = subprocess.run([sys.executable, "-c", _INTERRUPT_AT_ONCE, json.dumps(args), str(out / "sweep.log")],
                          capture_output=True, text=True, env=environment(), timeout=180)
    code, seconds = done.stdout.split()
    assert code == "130" and float(seconds) < 30, (done.stdout, done.stderr, (out / "sweep.log").read_text())


CLUSTER = """
import sys
import dask
import distributed
from gvae.sweep.execute import LOCAL_CLUSTER_CONFIG
if __name__ == "__main__":
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()  # until the test closes this pipe
    cluster.close()
"""


@pytest.mark.slow
def test_a_stopped_sweep_stops_its_runs_on_a_cluster_that_outlives_it(tmp_path, data_file):
    """SIGTERM to a sweep on a cluster of its own (--scheduler): Dask cannot cancel a running task, so the
    sweep asks every worker to interrupt its runs' processes; each stops resumably at once and the cluster
    lives on, idle (the runs would train on for their 100,000 epochs otherwise)."""
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")
    script = tmp_path / "cluster.py"
    script.write_text(CLUSTER)
    cluster = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=environment(), start_new_session=True)
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("tcp://"), address
        spec = write_spec(tmp_path, edit(edit(SPEC, "tiny.npz", str(data_file)), "epochs = 2", "epochs = 100000"))
        out = tmp_path / "sweep"
        runs = load_spec(spec).runs
        proc = subprocess.Popen([sys.executable, "-m", "gvae.cli", "sweep", str(spec), "--out", str(out),
                                 "--scheduler", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=environment(), start_new_session=True)
        try:
            wait_for(lambda: sum((out / run.id / "checkpoint.npz").is_file() for run in runs) >= 2
                     or proc.poll() is not None, 300, "two runs' first epochs")
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=120)
        finally:
            kill_group(proc)
        assert proc.returncode == 143, err
        started = {run.id for run in runs if (out / run.id).is_dir()}
        assert_stopped_resumably(out, runs, timeout=30)
        time.sleep(1.5)  # the tasks that waited were cancelled: no run starts after the sweep stopped
        assert {run.id for run in runs if (out / run.id).is_dir()} == started
        assert_stopped_resumably(out, runs, timeout=0)
        assert cluster.poll() is None  # the cluster outlives the sweep
    finally:
        cluster.stdin.close()
        try:
            cluster.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
        cluster.stdout.close()


def strip_times(table):
    """A table without what differs between equal sweeps: times and the folder's name."""
    table = json.loads(json.dumps(table))
    for entry in table["configs"].values():
        del entry["train_seconds"], entry["eval_seconds"]
    del table["total_seconds"], table["sweep"]
    return table


def sweep_process(spec, out):
    return subprocess.Popen([sys.executable, "-m", "gvae.cli", "sweep", str(spec), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
                            start_new_session=True, preexec_fn=answering_ctrl_c)


@pytest.mark.slow
def test_a_sweep_killed_midway_and_resumed_gives_the_table_of_an_uninterrupted_one(tmp_path, data_file):
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")
    # 30 epochs: long enough to be killed while training (most of a tiny run is starting its processes).
    spec = write_spec(tmp_path, edit(edit(SPEC, "tiny.npz", str(data_file)), "epochs = 2", "epochs = 30"))
    runs = load_spec(spec).runs

    killed = tmp_path / "killed"
    proc = sweep_process(spec, killed)
    evaluated = lambda: [run for run in runs if (killed / run.id / state.EVAL_RECORD).is_file()]  # noqa: E731
    training = lambda: [run for run in runs if (killed / run.id / "checkpoint.npz").is_file()  # noqa: E731
                        and not (killed / run.id / "summary.json").is_file()]
    try:
        # Killed when one run is evaluated and another is between its epochs.
        wait_for(lambda: evaluated() and training() or proc.poll() is not None, 300, "a run finished and one training")
        proc.send_signal(signal.SIGKILL)  # the sweep's driver only: its workers and their runs are left
        proc.communicate()
        for run in runs:  # the workers die with their driver, and each run with its worker
            wait_for(lambda: not (killed / run.id).is_dir() or lock_is_free(killed / run.id), 60,
                     f"{run.id} to stop")
    finally:
        kill_group(proc)
    finished_before = len(evaluated())
    assert 1 <= finished_before < len(runs), "the sweep was not killed mid-way"
    assert not (killed / "table.json").exists()

    resumed = subprocess.run([sys.executable, "-m", "gvae.cli", "sweep", str(spec), "--out", str(killed)],
                             capture_output=True, text=True, env=environment(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("done   ") == len(runs) - finished_before  # the finished runs are skipped
    # The uninterrupted runs: every run's commands, as the sweep's tasks give them, run one after the
    # other by one process of the kind that runs a task's commands (a third sweep would add a cluster and
    # a process per run to the test's time, and nothing to what it checks).
    whole = load_spec(spec, out=tmp_path / "whole")
    jobs = plan(whole)[0]
    commands = [list(args) for job in jobs for args in (job.train, job.evaluate)]
    child = subprocess.run([sys.executable, "-m", "gvae.sweep_child", str(os.getpid()), json.dumps(commands)],
                           capture_output=True, text=True, env=environment(), timeout=300)
    assert child.returncode == 0, child.stderr
    for job in jobs:
        state.record_evaluation(Path(job.folder), job.settings)
    tables = [json.loads((killed / "table.json").read_text()), build_table(whole, {})]
    assert strip_times(tables[0]) == strip_times(tables[1])
    assert all(c["test_log_likelihood"]["n_seeds"] == 2 for c in tables[0]["configs"].values())


@pytest.mark.slow
def test_a_failing_configuration_is_reported_and_recorded_and_the_others_are_kept(tmp_path, data_file):
    """A sweep with a configuration that fails, added to one whose runs are trained and evaluated: the
    others are kept, the failure is reported, recorded and listed, and the exit status says so."""
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")
    spec = write_spec(tmp_path, edit(SPEC, "tiny.npz", str(data_file)))
    sweep = load_spec(spec)
    _record_spec(sweep)
    for run in sweep.runs:
        fit(run)
        fake_evaluation(run, sweep.eval)
    before = strip_times(build_table(sweep, {}))
    failing = write_spec(tmp_path, edit(spec.read_text(), "[eval]",
                                        '[[configs]]\nname = "bad"\nlr = 1e12\nmax_bad_steps = 1\n[eval]'),
                         "failing.toml")
    again = subprocess.run([sys.executable, "-m", "gvae.cli", "sweep", str(failing), "--out", str(sweep.out)],
                           capture_output=True, text=True, env=environment(), timeout=300)
    assert again.returncode == 3, again.stderr
    assert "4 trained, 0 to resume, 2 to start" in again.stdout
    assert again.stdout.count("FAILED bad/seed-") == 2 and "lower learning rate" in again.stdout
    assert "2 of 6 runs failed" in again.stderr
    failures = state.failures_of(sweep.out)
    assert sorted(failures) == ["bad/seed-0", "bad/seed-1"] and failures["bad/seed-0"]["returncode"] == 3
    assert failures["bad/seed-0"]["command"] == "train"
    table = json.loads((sweep.out / "table.json").read_text())
    assert strip_times(table)["configs"]["chain"] == before["configs"]["chain"]
    assert [m["reason"].startswith("failed: gvae train exit 3") for m in table["configs"]["bad"]["missing"]] == [True] * 2
    assert (sweep.out / "sweep.1.toml").read_text() == spec.read_text()  # the spec it replaced is kept


@pytest.mark.slow
def test_a_run_imports_the_installed_gvae_not_one_in_the_working_directory(tmp_path, monkeypatch):
    """A gvae/ folder in the sweep's working directory (planted, or a checkout's parent) is never imported
    by the runs: python -m would put the working directory first on the import path."""
    from gvae.sweep.execute import _run_command
    planted = tmp_path / "gvae" / "sweep"
    planted.mkdir(parents=True)
    marker = tmp_path / "planted-code-ran"
    for init in (tmp_path / "gvae" / "__init__.py", planted / "__init__.py"):
        init.write_text(f"open({str(marker)!r}, 'w').close()\n")
    (planted / "child.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    code, failed, last = _run_command([["--version"]], tmp_path / "log.txt")
    assert code == 0 and failed == 0 and last.startswith("gvae ") and not marker.exists()


@pytest.mark.slow
def test_a_runs_commands_share_one_process_and_the_first_failure_ends_it(tmp_path):
    """run_job's process runs its commands in order; the one that fails ends it, and is the one named."""
    from gvae.sweep.execute import _run_command
    log = tmp_path / "log.txt"
    code, failed, last = _run_command([["--version"], ["train", "--latent", "zero"], ["--version"]], log)
    assert code == 2 and failed == 1 and "--latent" in last
    assert log.read_text().count("] gvae --version") == 1  # the third command did not run
    code, failed, last = _run_command([["eval", str(tmp_path / "nothing")], ["--version"]], log)
    assert code == 2 and failed == 0 and "no run" in last


@pytest.fixture
def odd_server():
    """A TCP server on 127.0.0.1 that never answers ("silent") or answers in another protocol
    ("garbage"); yields a function mode -> "host:port". It stops by itself after 30 s at most."""
    import socket
    import threading
    servers = []

    def start(mode):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.settimeout(30)
        servers.append(srv)

        def serve():
            held = []
            try:
                while True:
                    conn, _ = srv.accept()
                    held.append(conn)
                    if mode == "garbage":
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 4)
            except OSError:
                pass
            finally:
                for conn in held:
                    conn.close()
        threading.Thread(target=serve, daemon=True).start()
        return "127.0.0.1:%d" % srv.getsockname()[1]
    yield start
    for srv in servers:
        srv.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode, message", [("silent", "no Dask scheduler answered at"),
                                           ("garbage", "does not answer as a Dask scheduler")])
def test_a_scheduler_address_of_another_server_is_one_line_in_bounded_time(tmp_path, data_file, capsys, monkeypatch,
                                                                          odd_server, mode, message):
    pytest.importorskip("distributed")
    from gvae.sweep import execute
    monkeypatch.setattr(execute, "CONNECT_SECONDS", 2)
    start = time.monotonic()
    rc = main(["sweep", str(write_spec(tmp_path, edit(SPEC, "tiny.npz", str(data_file)))), "--scheduler",
               odd_server(mode)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1 and time.monotonic() - start < 20


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"address": 7}', '{"id": "x"}'])
def test_a_scheduler_file_that_is_not_one_is_named(tmp_path, data_file, capsys, content):
    pytest.importorskip("distributed")
    path = tmp_path / "scheduler.json"
    path.write_text(content)
    rc = main(["sweep", str(write_spec(tmp_path, edit(SPEC, "tiny.npz", str(data_file)))), "--scheduler", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{path} is not a Dask scheduler file" in err and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["metrics", "summary", "config"])
def test_a_damaged_run_is_named_and_the_others_go_on(tmp_path, capsys, damage):
    """One run whose metrics.jsonl, summary.json or config.json is damaged: gvae table still tables the
    others and gives the damaged one's reason naming the file; the sweep's plan leaves it as it is and
    plans the others."""
    path = write_spec(tmp_path, SPEC)
    sweep = load_spec(path)
    _record_spec(sweep)
    runs = {run.id: run for run in sweep.runs}
    for run_id in ("diagonal/seed-0", "diagonal/seed-1"):
        fit(runs[run_id])
        fake_evaluation(runs[run_id], sweep.eval, test_elbo=-100.0)
    broken = runs["diagonal/seed-1"].folder
    if damage == "metrics":
        (broken / "metrics.jsonl").write_bytes(b'{"epoch": 1}\n\xff\xfe not text\n')
    elif damage == "summary":
        (broken / "summary.json").write_text("{not json")
    else:
        (broken / "checkpoint.npz").unlink()  # the configuration is then read from config.json
        (broken / "config.json").write_text("[1, 2")
    named = {"metrics": "metrics.jsonl", "summary": "summary.json", "config": "config.json"}[damage]
    jobs, _, damaged = plan(sweep)
    assert list(damaged) == ["diagonal/seed-1"] and named in damaged["diagonal/seed-1"]
    assert "diagonal/seed-1" not in {job.id for job in jobs} and "chain/seed-0" in {job.id for job in jobs}
    if damage != "config":  # without a checkpoint but with its summary the table reads it as kept results
        table = build_table(sweep, {})
        assert table["configs"]["diagonal"]["test_elbo"]["n_seeds"] == 1
        [missing] = table["configs"]["diagonal"]["missing"]
        assert missing["seed"] == 1 and missing["reason"].startswith("damaged: ") and named in missing["reason"]
    assert main(["table", str(sweep.out)]) == 0
    capsys.readouterr()


def test_the_sweep_bar_counts_epochs_from_the_runs_folders(tmp_path):
    """The bar of gvae sweep moves by epochs the runs write to their metrics (each run trains --quiet in a
    process of its own): a finished run counts all its epochs (also when its patience stopped it), an
    unfinished one the epochs it has, a damaged one none; the watcher thread follows the files."""
    from tqdm import tqdm

    from gvae.sweep import execute
    sweep = load_spec(write_spec(tmp_path, edit(SPEC, "seeds = [0, 1]", "seeds = [0, 1, 2]")))
    _record_spec(sweep)
    runs = {run.id: run for run in sweep.runs}
    assert execute.epochs_done(sweep) == 0
    fake_run(runs["diagonal/seed-0"], [1.0, 1.0])
    fake_run(runs["diagonal/seed-1"], [1.0])
    fake_run(runs["chain/seed-0"], [1.0])
    write_json(runs["chain/seed-0"].folder / "summary.json", {"epochs": 1, "stopped_early": True, "best_epoch": 0})
    fake_run(runs["chain/seed-1"], [1.0])
    (runs["chain/seed-1"].folder / "metrics.jsonl").write_text("{not json\n")
    assert execute.epochs_done(sweep) == 2 + 1 + 2 + 0
    import io
    bar = tqdm(total=12, initial=5, file=io.StringIO())
    ended = threading.Event()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(execute, "FOLLOW_SECONDS", 0.01)
        watcher = threading.Thread(target=execute._follow_epochs, args=(sweep, bar, ended))
        watcher.start()
        write_jsonl(runs["chain/seed-1"].folder / "metrics.jsonl", [{"epoch": 1, "seconds": 1.0}])
        wait_for(lambda: bar.n == 6, 10, "the bar to follow the new epoch")
        ended.set()
        watcher.join(timeout=10)
    assert not watcher.is_alive()
