"""The speed history kept in asv_bench/results/ (tools/bench_history.sh), published as asv publishes it: the
page's index names the machine and the benchmarks, every benchmark of the subset has a graph with a
point for each commit of the history, and every benchmark and parameter of the whole suite has a history."""
import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "asv_bench" / "results"
COMMITS = 30  # the history covers at least main's last 30 commits as of its recording


def machines():
    """The machine folders of the history (each with its machine.json)."""
    return sorted(p for p in RESULTS.iterdir() if (p / "machine.json").is_file()) if RESULTS.is_dir() else []


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(html folder, index.json) of ``asv publish`` run on the history into a temporary folder
    (tools/bench_page.py's :func:`publish`)."""
    pytest.importorskip("asv")
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_page
    try:
        html = bench_page.publish(tmp_path_factory.mktemp("html"))
    except subprocess.CalledProcessError as err:
        pytest.fail(f"asv publish failed:\n{err.stdout}{err.stderr}")
    return html, json.loads((html / "index.json").read_text())


def test_the_history_holds_each_machines_results_for_main_s_last_commits():
    assert machines(), "asv_bench/results/ holds no machine's history (tools/bench_history.sh records it)"
    for folder in machines():
        commits = {f.name.split("-")[0] for f in folder.glob("*.json") if f.name != "machine.json"}
        assert len(commits) >= COMMITS, f"{folder.name}: {len(commits)} commits"
        assert re.fullmatch(r"[A-Za-z0-9-]+-\d+cores", folder.name), folder.name


def results_of(name, folder):
    """For each commit of machine ``folder`` that holds benchmark ``name``: (whether it was measured with the
    benchmark's current code, whether each parameter combination has a value, in asv's order; asv writes
    None or NaN where a combination did not run)."""
    version = json.loads((RESULTS / "benchmarks.json").read_text())[name]["version"]
    for f in folder.glob("*.json"):
        if f.name == "machine.json":
            continue
        result = json.loads(f.read_text())
        row = result["results"].get(name)
        if row is None:
            continue
        values = row[0] if isinstance(row[0], list) else [row[0]]
        yield (row[result["result_columns"].index("version")] == version,
               [v is not None and not math.isnan(v) for v in values])


def measured(name, folders=None, at=None):
    """(commits of the history measured with benchmark ``name``'s current code, commits measured with an
    earlier version of it), over the machine folders ``folders`` (every machine's by default): asv graphs
    only the first kind, so a benchmark whose code changed starts a new series. ``at`` ({parameter name:
    value as asv writes it}) counts a commit only where that combination of the parameters has a value."""
    index = None
    if at is not None:
        bench = json.loads((RESULTS / "benchmarks.json").read_text())[name]
        index = list(itertools.product(*bench["params"])).index(tuple(at[p] for p in bench["param_names"]))
    current = older = 0
    for folder in machines() if folders is None else folders:
        for is_current, has_value in results_of(name, folder):
            if not is_current:
                older += 1
            elif any(has_value) if index is None else index < len(has_value) and has_value[index]:
                current += 1
    return current, older


def test_the_published_page_graphs_every_benchmark_of_the_subset_at_every_commit(published):
    html, index = published
    for folder in machines():
        assert folder.name in index["machines"]
    from tests.test_bench_tools import subset_patterns
    graphs = [p for p in (html / "graphs").rglob("*.json")]
    assert graphs
    for pattern in subset_patterns():
        base = pattern.split("\\(")[0].replace("\\.", ".")
        assert base in index["benchmarks"], base
        current, older = measured(base)
        # Every commit is measured, and a series restarts only where the benchmark's code changed (the Adam
        # pass's, when its variant with the average moved to a class of its own at 7e51625).
        assert current >= 1 and current + older >= COMMITS, (base, current, older)
        for folder in machines():  # each machine's graph has a point per commit measured there
            files = [g for g in graphs if g.stem == base and "summary" not in g.parts
                     and f"machine-{folder.name}" in g.parts]
            assert files, f"no graph of {base} on {folder.name}"
            mine = measured(base, [folder])[0]
            for g in files:
                points = json.loads(g.read_text())
                assert len(points) >= mine, (g, len(points), mine)
                # each point: (revision, value or a list of values over the parameters); some of them measured
                assert any(v is not None and (not isinstance(v, list) or any(x is not None for x in v))
                           for _, v in points)


def test_every_benchmark_and_parameter_of_the_suite_has_a_history():
    """The whole suite, not only the subset: each benchmark's every parameter combination has a value at
    COMMITS commits or more of one machine (the subset from tools/bench_history.sh, the rest from its ALL=1
    fill-in), measured with the benchmark's current code. A combination with no value at any commit must be
    one the suite skips by design (its setup raises NotImplementedError: the full family past d = 16)."""
    suite = json.loads((RESULTS / "benchmarks.json").read_text())
    skipped_by_design = {("bench_training.FamilyStep.time_step", ("'full'", objective, "64"))
                         for objective in suite["bench_training.FamilyStep.time_step"]["params"][1]}
    for name, bench in suite.items():
        if name == "version":
            continue
        combos = list(itertools.product(*bench["params"])) if bench["params"] else [()]
        best = [0] * len(combos)
        for folder in machines():
            counts = [0] * len(combos)
            for is_current, has_value in results_of(name, folder):
                if is_current:
                    counts = [c + h for c, h in zip(counts, has_value)]
            best = [max(b, c) for b, c in zip(best, counts)]
        for combo, count in zip(combos, best):
            if (name, tuple(combo)) in skipped_by_design:
                assert count == 0, (name, combo, count)
            else:
                assert count >= COMMITS, (name, combo, count)
