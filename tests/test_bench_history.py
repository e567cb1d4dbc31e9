"""The speed history kept in asv_bench/results/ (tools/bench_history.sh), published as asv publishes it: the
page's index names the machine and the benchmarks, and every benchmark of the subset has a graph with a
point for each commit of the history."""
import json
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


def measured(name, folders=None):
    """(commits of the history measured with benchmark ``name``'s current code, commits measured with an
    earlier version of it), over the machine folders ``folders`` (every machine's by default): asv graphs
    only the first kind, so a benchmark whose code changed starts a new series."""
    version = json.loads((RESULTS / "benchmarks.json").read_text())[name]["version"]
    current = older = 0
    for folder in machines() if folders is None else folders:
        for f in folder.glob("*.json"):
            if f.name == "machine.json":
                continue
            result = json.loads(f.read_text())
            row = result["results"].get(name)
            if row is None:
                continue
            values = row[0] if isinstance(row[0], list) else [row[0]]
            if row[result["result_columns"].index("version")] != version:
                older += 1
            elif any(v is not None for v in values):
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
