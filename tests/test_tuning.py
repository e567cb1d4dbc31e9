"""The per-machine plans of gvae's products (gvae.kernels.cpu.tuning, matmul_cpu.plan): measured once, kept in
one file per machine, shared by processes, rebuilt when damaged, never a change in the results beyond
float32 rounding."""
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gvae import kernels
from gvae.kernels import matmul_cpu
from gvae.kernels.cpu import threads, tuning
from gvae.kernels.cpu.state import RUNTIME


@pytest.fixture
def quiet(monkeypatch):
    """No check for other work on the CPUs during a measurement (the tests run beside each other)."""
    monkeypatch.setattr(tuning, "_ticks", lambda: None)


@pytest.fixture
def tuned(tmp_path, monkeypatch, quiet):
    """Tuning on, its plans in a folder of this test's (through $XDG_CACHE_HOME, as a user would move it);
    one thread again after."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GVAE_TUNING")
    for name in ("tuning_on", "tuning_writable", "tuning_plans"):
        monkeypatch.setattr(RUNTIME, name, None)
    RUNTIME.tuning_generation += 1  # what this process decided before is forgotten (never set back)
    yield tmp_path / "cache" / "gvae" / "plans"
    kernels.set_threads(1)


class _Clock:
    """A stand-in for the time module whose clock moves only when a candidate says how long it took."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def spend(self, seconds):
        return lambda: setattr(self, "now", self.now + seconds)


@pytest.mark.parametrize("default_ms, other_ms, expected", [
    (2.0, 1.0, "other"),        # clearly faster: it replaces the rule
    (1.04, 1.0, "default"),     # 4% faster: within MARGIN, the rule stays
    (1.0, 2.0, "default"),
])
def test_the_rule_stays_unless_another_is_faster_by_more_than_the_margin(monkeypatch, quiet, default_ms, other_ms,
                                                                         expected):
    clock = _Clock()
    monkeypatch.setattr(tuning, "time", clock)
    after = []
    candidates = {"default": clock.spend(default_ms / 1e3), "other": clock.spend(other_ms / 1e3)}
    assert tuning.fastest(candidates, "default", lambda: after.append(1)) == expected
    assert len(after) >= 2 * (tuning.MIN_ROUNDS + 1)  # a hand-over after each trial, the untimed ones too


def test_a_candidate_that_leaves_the_cores_busy_pays_for_it(monkeypatch, quiet):
    """The hand-over after a trial is timed with it: the candidate it follows is charged."""
    clock = _Clock()
    monkeypatch.setattr(tuning, "time", clock)
    state = {"busy": False}

    def quick_but_leaves_spinning():
        clock.now += 1e-3
        state["busy"] = True

    def handover():
        clock.now += 2e-3 if state["busy"] else 0.0
        state["busy"] = False
    assert tuning.fastest({"rule": clock.spend(2e-3), "spinner": quick_but_leaves_spinning}, "rule",
                          handover) == "rule"


def test_a_measurement_beside_other_work_keeps_the_rule(monkeypatch):
    """Other processes took 100 ticks of this process's CPUs while the candidates ran: the clearly faster
    candidate is not trusted."""
    clock = _Clock()
    monkeypatch.setattr(tuning, "time", clock)
    readings = iter([(1000, 50), (1100, 50)])
    monkeypatch.setattr(tuning, "_ticks", lambda: next(readings))
    candidates = {"default": clock.spend(2e-3), "other": clock.spend(1e-3)}
    assert tuning.fastest(candidates, "default", lambda: None) == "default"
    readings = iter([(1000, 50), (1100, 150)])  # the same ticks, this process's own: no disturbance
    assert tuning.fastest(candidates, "default", lambda: None) == "other"


@pytest.mark.slow
def test_another_program_on_this_process_cpus_is_seen():
    """A busy loop in another process, on the CPUs this one may use, for half a second."""
    before = tuning._ticks()
    if before is None:
        pytest.skip("no /proc here")
    cpus = sorted(os.sched_getaffinity(0))
    start = time.perf_counter()
    hog = subprocess.Popen([sys.executable, "-c", f"import os, time\nos.sched_setaffinity(0, {cpus[:1]})\n"
                            "while time.process_time() < 0.6: pass"])  # 0.6 s of CPU, however long it takes
    hog.wait(timeout=60)
    assert tuning._disturbed(before, tuning._ticks(), time.perf_counter() - start)


def _operands(m, k, n, sparse=False, seed=0):
    rng = np.random.default_rng(seed)
    a = (rng.random((m, k)) < 0.1).astype(np.float32) if sparse else rng.standard_normal((m, k)).astype(np.float32)
    return a, rng.standard_normal((k, n)).astype(np.float32)


def test_a_product_measured_on_two_threads_is_kept_and_used(tuned, monkeypatch):
    a, b = _operands(200, 300, 400)
    kernels.set_threads(2)
    measured = []
    real = tuning.fastest
    monkeypatch.setattr(tuning, "fastest", lambda *args: measured.append(1) or real(*args))
    got = kernels.matmul(a, b)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    kept = json.loads(tuning.plan_file().read_text())
    assert kept["machine"] == tuning.identity()
    name = "matmul float32 200x300x400 NN 2 threads"
    assert kept["plans"][name] in ("whole", "rows", "columns")
    assert matmul_cpu.plan(a, b, out=np.empty_like(got))[0] == {"whole": "whole", "rows": "rows",
                                                                "columns": "columns"}[kept["plans"][name]]
    for _ in range(3):
        np.testing.assert_array_equal(kernels.matmul(a, b), got)  # the kept plan, the same bits
    assert measured == [1]
    assert tuned in tuning.plan_file().parents


def test_small_products_and_one_thread_follow_the_rule_unmeasured(tuned, monkeypatch):
    monkeypatch.setattr(tuning, "fastest", lambda *args: pytest.fail("measured"))
    a, b = _operands(100, 16, 500)  # 1.6 MFLOP: a few microseconds
    kernels.set_threads(2)
    np.testing.assert_allclose(kernels.matmul(a, b), a @ b, rtol=1e-5, atol=1e-5)
    a, b = _operands(200, 300, 400)
    kernels.set_threads(1)
    np.testing.assert_allclose(kernels.matmul(a, b), a @ b, rtol=1e-5, atol=1e-4)
    assert not tuning.plan_file().exists()


def test_a_product_inside_a_task_runs_whole_unmeasured(tuned, monkeypatch):
    """The evaluation's parts run their products inside a task of gvae's threads: one thread each."""
    monkeypatch.setattr(tuning, "fastest", lambda *args: pytest.fail("measured"))
    kernels.set_threads(2)
    pairs = [_operands(200, 300, 400, seed=s) for s in (1, 2)]
    outs = [None, None]

    def part(k):
        outs[k] = kernels.matmul(*pairs[k])
    threads.run([lambda: part(0), lambda: part(1)])
    for (a, b), got in zip(pairs, outs):
        np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("sparse", [False, True])
def test_every_plan_computes_the_product(tuned, sparse):
    """Each way a product may be cut, kept as the plan: float32 rounding of the float64 product."""
    a, b = _operands(200, 300, 400, sparse=sparse)
    kernels.set_threads(2)
    known = matmul_cpu.sparse_factor(a)
    assert (known is not None) == sparse
    choices = matmul_cpu._choices(a, b, known)
    assert {"whole", "rows", "columns"} <= set(choices)
    assert ({"sparse whole", "sparse rows"} <= set(choices)) == sparse
    expected = a.astype(np.float64) @ b
    for name in choices:
        tuning.clear()
        assert tuning.tune(matmul_cpu.key(a, b, known), {name: lambda: None}, name, lambda: None) == name
        assert matmul_cpu.plan(a, b)[0] == {"sparse whole": "sparse rows"}.get(name, name)
        np.testing.assert_allclose(kernels.matmul(a, b), expected, rtol=1e-4, atol=1e-3, err_msg=name)
        pair = kernels.matmuls([(a, b, None), (a.T.copy(), a, None)])
        np.testing.assert_allclose(pair[0], expected, rtol=1e-4, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(pair[1], a.T.astype(np.float64) @ a, rtol=1e-4, atol=1e-3, err_msg=name)


@pytest.mark.slow
def test_a_pair_may_be_computed_one_by_one(tuned):
    a, b = _operands(200, 300, 400)
    c, d = _operands(300, 200, 400, seed=3)
    kernels.set_threads(2)
    pair = "side by side: " + " & ".join(matmul_cpu.key(x, y, None) for x, y in ((a, b), (c, d)))
    for name in ("side by side", "one by one"):
        tuning.clear()
        tuning.tune(pair, {name: lambda: None}, name, lambda: None)
        got = kernels.matmuls([(a, b, None), (c, d, None)])
        assert tuning.plans()[pair] == name
        np.testing.assert_allclose(got[0], a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(got[1], c.astype(np.float64) @ d, rtol=1e-4, atol=1e-3)
    # One by one, each product alone was planned (and kept) too.
    assert matmul_cpu.key(a, b, None) in tuning.plans()


def test_an_output_that_overlaps_a_factor_is_never_measured_into(tuned, monkeypatch):
    monkeypatch.setattr(tuning, "fastest", lambda *args: pytest.fail("measured"))
    kernels.set_threads(2)
    a = np.random.default_rng(0).standard_normal((300, 300)).astype(np.float32)
    expected = a.astype(np.float64) @ a
    out = a.copy()
    kernels.matmul(out, a, out=out)  # written again and again, out would be a^3, a^4, ...
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("damage", ["not json {", json.dumps([1, 2]), json.dumps({"machine": {"cpu": "another"},
                                                                                   "plans": {}}),
                                    "MACHINE_WITH_BAD_PLANS", ""])
def test_a_damaged_plan_file_is_ignored_and_rebuilt(tuned, damage):
    path = tuning.plan_file()
    path.parent.mkdir(parents=True)
    if damage == "MACHINE_WITH_BAD_PLANS":
        damage = json.dumps({"machine": tuning.identity(), "plans": {"k": 3}})
    path.write_text(damage)
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert tuning.plans() == {}
    with pytest.warns(RuntimeWarning, match="damaged"):  # read again, under the lock, to be rebuilt
        assert tuning.tune("k", {"x": lambda: None}, "x", lambda: None) == "x"
    rebuilt = json.loads(path.read_text())
    assert rebuilt == {"machine": tuning.identity(), "plans": {"k": "x"}}
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


# A process that reads a plan: its memory held to a bound (a plan file read whole, /dev/zero through a
# link, would take the machine's), its time to HOSTILE_SECONDS (a FIFO opened for reading waits for ever).
_READER = textwrap.dedent("""
    import json, resource, warnings
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from gvae.kernels.cpu import tuning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = tuning.plans()
        kept = tuning.tune("k", {"x": lambda: None}, "x", lambda: None)
    print(json.dumps({"plans": first, "kept": kept, "warnings": [str(w.message) for w in caught]}))
""")
HOSTILE_SECONDS = 60


def _plant(path, kind):
    """Put the hostile ``kind`` of file at ``path``; the words its warning must hold."""
    if kind == "random bytes":  # what a disk error or a stray write leaves: not UTF-8
        path.write_bytes(b"\xff\xfe" + np.random.default_rng(0).bytes(4096))
        return "UTF-8"
    if kind == "nested":  # valid JSON, but deeper than the parser's recursion allows
        path.write_text("[" * 200_000 + "]" * 200_000)
        return "nested"
    if kind == "large":  # 3 GB, sparse: nothing of it may be read
        with open(path, "wb") as f:
            f.truncate(3 * 10 ** 9)
        return "larger than"
    if kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
        return "symbolic link"
    if kind == "fifo":  # opening it for reading would wait for a writer, for ever
        os.mkfifo(path)
        return "not a regular file"
    raise AssertionError(kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["random bytes", "nested", "large", "link to /dev/zero", "fifo"])
def test_a_hostile_plan_file_is_a_warning_naming_it_and_is_rebuilt(tuned, kind):
    """Issue 50: random bytes stopped every threaded run (UnicodeDecodeError, the file unnamed), deep
    nesting raised RecursionError, a 3 GB file or a link to /dev/zero was read whole, a FIFO hung. Each is
    now a warning naming the file, read quickly and without following links, and then replaced by a
    regular file holding the new plan."""
    path = tuning.plan_file()
    path.parent.mkdir(parents=True)
    words = _plant(path, kind)
    env = {**os.environ, "XDG_CACHE_HOME": str(tuned.parent.parent)}
    try:
        done = subprocess.run([sys.executable, "-c", _READER], env=env, capture_output=True, text=True,
                              timeout=HOSTILE_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading the plan file ({kind}) took more than {HOSTILE_SECONDS} s")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["plans"] == {} and found["kept"] == "x"
    first, again = found["warnings"]  # on reading it, and on reading it again under the lock to rebuild it
    assert str(path) in first and words in first and str(path) in again
    assert path.is_file() and not path.is_symlink()
    assert json.loads(path.read_text()) == {"machine": tuning.identity(), "plans": {"k": "x"}}
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_a_damaged_plan_file_does_not_stop_a_threaded_training(tuned, tmp_path):
    """Issue 50: a plan file of random bytes stopped `gvae train` on two threads with exit 2 (the file
    unnamed, a run folder left with config.json alone). It trains, and the warning names the file."""
    from gvae.cli import main
    from tests.helpers import write_data
    path = tuning.plan_file()
    path.parent.mkdir(parents=True)
    _plant(path, "random bytes")
    data = write_data(tmp_path / "tiny.npz", n=200)
    with pytest.warns(RuntimeWarning, match=str(path)):
        code = main(["train", "--data", str(data), "--limit", "200", "--latent", "3", "--hidden", "256",
                     "--batch-size", "200", "--epochs", "1", "--threads", "2", "--quiet",
                     "--out", str(tmp_path / "run")])
    assert code == 0 and (tmp_path / "run" / "checkpoint.npz").is_file()
    assert json.loads(path.read_text())["machine"] == tuning.identity()


def test_a_plan_lock_that_is_a_dangling_link_creates_nothing_elsewhere(tuned, tmp_path):
    """Issue 50: the plan file's lock, a link to a missing path, made that file (outside the cache). The
    link is not followed: plans are read unlocked (a writer replaces the file by a rename, so a reader
    sees it whole), but none is written unlocked (two processes could each keep their own plan for one
    key): the call follows its rule, with a warning naming the lock."""
    path = tuning.plan_file()
    path.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere" / "made-by-gvae"
    elsewhere.parent.mkdir()
    lock = path.with_name(path.name + ".lock")
    lock.symlink_to(elsewhere)
    assert tuning.plans() == {}
    with pytest.warns(RuntimeWarning, match=f"{lock}.*symbolic link"):
        assert tuning.tune("k", {"x": lambda: None, "y": lambda: None}, "y", lambda: None) == "y"
    assert not elsewhere.exists() and lock.is_symlink() and not path.exists()
    path.write_text("{}")  # a plan file to clear: not without its lock, and the error names the link
    with pytest.raises(OSError, match=f"{lock} is a symbolic link"):
        tuning.clear()
    assert not elsewhere.exists() and path.exists()


def test_a_plan_lock_that_is_a_fifo_is_refused_at_once(tuned):
    """Anything but a regular file where the lock goes is refused as a link is, without waiting on it."""
    path = tuning.plan_file()
    path.parent.mkdir(parents=True)
    os.mkfifo(str(path) + ".lock")
    with pytest.warns(RuntimeWarning, match=f"{path}.lock is not a regular file"):
        assert tuning.tune("k", {"x": lambda: None, "y": lambda: None}, "y", lambda: None) == "y"
    assert not path.exists()


def test_a_plan_file_full_to_its_bound_keeps_its_plans(tuned, monkeypatch):
    """A plan file is refused beyond PLAN_BYTES; so no plan is added that would take it there (it would
    be read as damaged and every plan lost): that product follows its rule, with a warning, and the
    plans kept before stay."""
    monkeypatch.setattr(tuning, "PLAN_BYTES", len(json.dumps({"machine": tuning.identity(), "plans": {"k": "x"}},
                                                            sort_keys=True, indent=1)))
    assert tuning.tune("k", {"x": lambda: None}, "x", lambda: None) == "x"
    with pytest.warns(RuntimeWarning, match="full"):
        assert tuning.tune("k2", {"a": lambda: None, "b": lambda: None}, "a", lambda: None) == "a"
    assert json.loads(tuning.plan_file().read_text())["plans"] == {"k": "x"}
    RUNTIME.tuning_plans = None
    assert tuning.plans() == {"k": "x"}


def test_a_plan_folder_that_turns_unwritable_keeps_the_rule(tuned, monkeypatch):
    """The plan folder writable when tuning began, not when a plan is kept (the rename refused): the
    product follows its rule, with a warning naming the folder, and tuning stops for this process."""
    tuning.plans()
    assert tuning.active()

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", dst)
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.warns(RuntimeWarning, match=f"cannot keep plans in {tuning.folder()}"):
        assert tuning.tune("k", {"x": lambda: None, "y": lambda: None}, "y", lambda: None) == "y"
    assert not tuning.active() and not tuning.plan_file().exists()
    assert not [p for p in tuned.iterdir() if p.name.endswith(".tmp")]


def test_a_kept_plan_that_is_no_longer_a_choice_is_measured_again(tuned):
    tuning.tune("k", {"gone": lambda: None}, "gone", lambda: None)
    assert tuning.recorded("k", ("x", "y")) is None
    assert tuning.tune("k", {"x": lambda: None, "y": lambda: None}, "y", lambda: None) in ("x", "y")
    assert tuning.plans()["k"] in ("x", "y")


_RECORDER = textwrap.dedent("""
    import sys, time
    from gvae.kernels.cpu import tuning
    me, start = sys.argv[1], float(sys.argv[2])
    real = tuning.os.replace
    def slow_replace(src, dst):  # a slow file system: the window between reading and renaming is wide
        time.sleep(0.2)
        real(src, dst)
    tuning.os.replace = slow_replace
    tuning.plans()
    time.sleep(max(0.0, start - time.time()))
    shared = tuning.tune("shared", {"a": lambda: None, "b": lambda: None}, "a" if me in "02" else "b",
                         lambda: None)
    own = tuning.tune("own " + me, {me: lambda: None}, me, lambda: None)
    print(shared, own)
""")


@pytest.mark.slow
def test_processes_that_keep_plans_at_once_lose_none(tuned):
    env = {**os.environ, "XDG_CACHE_HOME": str(tuned.parent.parent)}
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", _RECORDER, str(k), str(start)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    answers = [out.split() for out, _ in outputs]
    kept = json.loads(tuning.plan_file().read_text())["plans"]
    assert {k: v for k, v in kept.items() if k.startswith("own")} == {f"own {k}": str(k) for k in range(4)}
    # The first plan kept for a key is every process's plan.
    assert {shared for shared, _ in answers} == {kept["shared"]}


@pytest.mark.slow
def test_a_second_process_uses_the_kept_plans_without_measuring(tuned):
    a, b = _operands(200, 300, 400)
    kernels.set_threads(2)
    got = kernels.matmul(a, b)
    np.save(tuned.parent / "a.npy", a)
    np.save(tuned.parent / "b.npy", b)
    script = textwrap.dedent(f"""
        import numpy as np
        from gvae import kernels
        from gvae.kernels.cpu import tuning
        def refuse(*args):
            raise AssertionError("measured again")
        tuning.fastest = refuse
        kernels.set_threads(2)
        a, b = np.load({str(tuned.parent / "a.npy")!r}), np.load({str(tuned.parent / "b.npy")!r})
        np.save({str(tuned.parent / "got.npy")!r}, kernels.matmul(a, b))
    """)
    env = {**os.environ, "XDG_CACHE_HOME": str(tuned.parent.parent)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tuned.parent / "got.npy"), got)


def test_tuning_is_off_without_a_writable_folder(tuned, monkeypatch):
    tuned.parent.parent.mkdir(parents=True)
    (tuned.parent.parent / "gvae").write_text("a file where the folder would be")
    monkeypatch.setattr(tuning, "fastest", lambda *args: pytest.fail("measured"))
    assert not tuning.active()
    a, b = _operands(200, 300, 400)
    kernels.set_threads(2)
    np.testing.assert_allclose(kernels.matmul(a, b), a @ b, rtol=1e-4, atol=1e-3)
    assert matmul_cpu.plan(a, b, out=np.empty((200, 400), np.float32)) == matmul_cpu.rule(a, b)


@pytest.mark.slow
def test_tuning_is_turned_off_by_the_environment_or_by_set_tuning(tuned, monkeypatch):
    assert tuning.active()
    tuning.set_tuning(False)
    assert not tuning.active()
    for bad in (1, "off", None):
        with pytest.raises(ValueError, match="True or False"):
            tuning.set_tuning(bad)
    env = {**os.environ, "XDG_CACHE_HOME": str(tuned.parent.parent), "GVAE_TUNING": "off"}
    done = subprocess.run([sys.executable, "-c", "from gvae.kernels.cpu import tuning; print(tuning.active())"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_clear_removes_the_plans_and_they_are_measured_again(tuned, monkeypatch):
    a, b = _operands(200, 300, 400)
    kernels.set_threads(2)
    kernels.matmul(a, b)
    assert tuning.plan_file().exists()
    assert tuning.clear() == [tuning.plan_file().name]
    assert not tuning.plan_file().exists() and tuning.plans() == {}
    measured = []
    real = tuning.fastest
    monkeypatch.setattr(tuning, "fastest", lambda *args: measured.append(1) or real(*args))
    kernels.matmul(a, b)
    assert measured == [1]


@pytest.mark.slow
def test_the_plans_command_shows_and_clears_them(tuned):
    a, b = _operands(200, 300, 400)
    kernels.set_threads(2)
    kernels.matmul(a, b)
    env = {**os.environ, "XDG_CACHE_HOME": str(tuned.parent.parent)}
    shown = subprocess.run([sys.executable, "-m", "gvae.cli", "plans"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "tuning: on" in shown.stdout and str(tuning.plan_file()) in shown.stdout
    assert "matmul float32 200x300x400 NN 2 threads:" in shown.stdout
    cleared = subprocess.run([sys.executable, "-m", "gvae.cli", "plans", "--clear"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert cleared.returncode == 0 and tuning.plan_file().name in cleared.stdout
    assert not tuning.plan_file().exists()


@pytest.mark.slow
def test_a_run_resumed_in_other_processes_on_kept_plans_gives_the_same_numbers(tuned, tmp_path):
    """The first process measures its plans during its first step (the step's products are those of the
    plan chosen, not of the last candidate timed); the processes after it read them."""
    from tests.helpers import write_data
    data = write_data(tmp_path / "data.npz", n=300)
    env = {**os.environ, "XDG_CACHE_HOME": str(tuned.parent.parent)}
    common = ["--data", str(data), "--hidden", "300", "--latent", "4", "--batch-size", "100", "--threads", "2",
              "--quiet"]

    def train(*args):
        done = subprocess.run([sys.executable, "-m", "gvae.cli", "train", *common, *args], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    train("--epochs", "3", "--out", str(tmp_path / "straight"))
    kept = json.loads(tuning.plan_file().read_text())["plans"]
    assert "matmul float32 100x784x300 NN 2 threads sparse" in kept  # the first layer's (binarised x) product
    train("--epochs", "1", "--out", str(tmp_path / "split"))
    train("--epochs", "3", "--resume", "--out", str(tmp_path / "split"))
    assert json.loads(tuning.plan_file().read_text())["plans"] == kept
    strip = lambda line: {k: v for k, v in json.loads(line).items()  # noqa: E731
                          if not k.startswith("seconds") and k != "resumed_with"}
    rows = [[strip(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("straight", "split")]
    assert rows[0] == rows[1]
