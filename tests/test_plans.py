"""The per-machine plans (gvae/kernels/plans.py) and the products that follow them (matmul_cpu.py): a plan
is measured once and read after, in this process and in the next; its file is written whole, survives two
writers at once, and a damaged one is replaced; every way a plan can choose computes the same product."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gvae import kernels
from gvae.cli import main
from gvae.kernels import matmul_cpu, plans

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def plan_dir(tmp_path, monkeypatch):
    """An empty plan folder of the test's own, and nothing of it in this process's memory."""
    monkeypatch.setenv("GVAE_PLAN_DIR", str(tmp_path / "plans"))
    plans.clear()
    yield tmp_path / "plans"
    plans.clear()


def counting(calls, **seconds):
    """make_candidates for plans.choose: candidates that take about the given seconds, counting the calls."""
    def make():
        calls.append(1)
        return {name: (lambda s=s: sum(range(int(s * 2e7)))) for name, s in seconds.items()}
    return make


def test_a_plan_is_measured_once_then_read_from_memory_and_from_the_file(plan_dir):
    calls = []
    assert plans.choose("k", counting(calls, fast=0.0, slow=0.01)) == "fast"
    assert plans.choose("k", counting(calls, fast=0.0, slow=0.01)) == "fast"
    assert len(calls) == 1
    entry = plans.entries()["k"]
    assert entry["choice"] == "fast" and entry["seconds"]["fast"] < entry["seconds"]["slow"]
    plans._memory.clear(), plans._loaded.clear()  # as a new process finds it
    assert plans.choose("k", counting(calls, fast=0.01, slow=0.0)) == "fast"
    assert len(calls) == 1
    assert json.loads(Path(plans.plan_file()).read_text())["machine"] == plans.machine()


def test_another_process_reads_the_plan_instead_of_measuring(plan_dir):
    plans.choose("matmul float32 7x7x7 aC bC threads 2", counting([], one=0.0, blas=0.01))
    code = ("from gvae.kernels import plans\n"
            "print(plans.choose('matmul float32 7x7x7 aC bC threads 2', lambda: 1 / 0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "one"


@pytest.mark.parametrize("damage", ["", "not json", "[1, 2]", '{"plans": [1]}', '{"plans": {"k": {"choice": 3}}}',
                                    '{"plans": {"k": {"choice": "x", "seconds": {"y": 1.0}}}}',
                                    '{"plans": {"k": {"choice": "x", "seconds": {"x": "fast"}}}}'])
def test_a_damaged_plan_file_is_ignored_and_replaced(plan_dir, damage):
    path = Path(plans.plan_file())
    path.parent.mkdir(parents=True)
    path.write_text(damage)
    assert plans.entries() == {}
    assert plans.choose("k", counting([], a=0.0, b=0.01)) == "a"
    assert set(plans.entries()) == {"k"}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left beside it
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_two_processes_planning_at_once_leave_a_whole_file(plan_dir):
    code = ("import sys\nfrom gvae.kernels import plans\n"
            "for i in range(40):\n"
            "    plans.choose(f'{sys.argv[1]} {i}', lambda: {'a': lambda: None, 'b': lambda: None})\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, name], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stderr=subprocess.PIPE, text=True) for name in ("first", "second")]
    assert all(p.wait(timeout=120) == 0 for p in procs), [p.stderr.read() for p in procs]
    found = plans.entries()  # a file both wrote: whole, with entries of both (one lost to the race is re-measured)
    assert found and set(found) <= {f"{n} {i}" for n in ("first", "second") for i in range(40)}
    assert {key.split()[0] for key in found} == {"first", "second"}
    assert [p.name for p in Path(plans.plan_file()).parent.iterdir()] == [Path(plans.plan_file()).name]


def test_an_unwritable_plan_folder_plans_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("GVAE_PLAN_DIR", str(blocker / "plans"))  # under a file: cannot be created
    plans.clear()
    calls = []
    assert plans.choose("k", counting(calls, a=0.0, b=0.01)) == "a"
    assert plans.choose("k", counting(calls, a=0.0, b=0.01)) == "a" and len(calls) == 1
    assert plans.entries() == {}
    plans.clear()


def test_the_plan_file_is_per_machine_and_folder(plan_dir, monkeypatch):
    path = Path(plans.plan_file())
    assert path.parent == plan_dir and path.name.startswith("plans-") and path.suffix == ".json"
    real = plans.machine()
    monkeypatch.setattr(plans, "machine", lambda: {**real, "cores": real["cores"] + 1})
    assert Path(plans.plan_file()) != path


def test_gvae_plan_shows_and_clears_the_plans(plan_dir, capsys):
    assert main(["plan"]) == 0
    assert "none yet" in capsys.readouterr().out
    plans.choose("matmul float32 9x9x9 aC bC threads 2", counting([], one=0.0, rows=0.01))
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert plans.machine()["cpu"] in out and "  matmul float32 9x9x9 aC bC threads 2: one (ms: one" in out
    assert plans.describe(3)[1:] == [] and len(plans.describe(2)) == 2
    assert main(["plan", "--clear"]) == 0
    assert "removed" in capsys.readouterr().out and not Path(plans.plan_file()).exists()
    assert main(["plan", "--clear"]) == 0
    assert "no plans at" in capsys.readouterr().out


@pytest.fixture
def two_threads():
    if matmul_cpu._openblas_threads() is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS whose thread count can be set")
    kernels.set_threads(2)
    yield
    kernels.set_threads(1)


@pytest.mark.parametrize("way", ["one", "blas", "rows", "cols"])
@pytest.mark.parametrize("a_t, b_t", [(False, False), (False, True), (True, False)])
def test_every_way_of_a_planned_product_gives_the_product(plan_dir, two_threads, monkeypatch, way, a_t, b_t):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 211)).astype(np.float32)  # 2 x 150 x 211 x 700 flops: above MIN_FLOPS
    b = rng.standard_normal((211, 700)).astype(np.float32)
    a = np.ascontiguousarray(a.T).T if a_t else a
    b = np.ascontiguousarray(b.T).T if b_t else b
    chosen = []
    monkeypatch.setattr(plans, "choose", lambda key, make: chosen.append((key, sorted(make()))) or way)
    get = matmul_cpu._openblas_threads()[0]
    before = get()
    got = kernels.matmul(a, b)
    assert get() == before  # the BLAS's thread count is as it was
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    layout = lambda t: "F" if t else "C"  # noqa: E731
    assert chosen == [(f"matmul float32 300x211x700 a{layout(a_t)} b{layout(b_t)} threads 2",
                       ["blas", "cols", "one", "rows"])]


@pytest.mark.parametrize("way", ["side", "each"])
def test_both_ways_of_a_planned_pair_give_the_products(plan_dir, two_threads, monkeypatch, way):
    rng = np.random.default_rng(1)
    g, W, h = (rng.standard_normal(s).astype(np.float32) for s in ((200, 300), (250, 300), (200, 250)))
    ways = {}
    monkeypatch.setattr(plans, "choose", lambda key, make: ways.setdefault(key, way if "+" in key else "one"))
    dx, dW = kernels.matmuls([(g, W.T, None), (h.T, g, None)])
    np.testing.assert_allclose(dx, g.astype(np.float64) @ W.T, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dW, h.T.astype(np.float64) @ g, rtol=1e-4, atol=1e-3)
    assert [k for k in ways if "+" in k] == ["matmuls matmul float32 200x300x250 aC bF threads 2 + "
                                             "matmul float32 250x200x300 aF bC threads 2"]


def test_small_products_are_not_planned(plan_dir, two_threads, monkeypatch):
    monkeypatch.setattr(plans, "choose", lambda key, make: pytest.fail(f"planned {key}"))
    a = np.ones((20, 30), np.float32)
    np.testing.assert_array_equal(kernels.matmul(a, a.T), np.full((20, 20), 30, np.float32))
    pair = kernels.matmuls([(a, a.T, None), (a.T, a, None)])
    np.testing.assert_array_equal(pair[1], np.full((30, 30), 20, np.float32))


def test_a_real_plan_is_measured_and_kept(plan_dir, two_threads):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((300, 200)).astype(np.float32), rng.standard_normal((200, 400)).astype(np.float32)
    np.testing.assert_allclose(kernels.matmul(a, b), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    entry = plans.entries()["matmul float32 300x200x400 aC bC threads 2"]
    assert set(entry["seconds"]) == {"one", "blas", "rows", "cols"} and all(s > 0 for s in entry["seconds"].values())
    assert entry["seconds"][entry["choice"]] == min(entry["seconds"].values())
