"""The speed tools' cheap parts: the subset that tools/bench_compare.sh and tools/bench_history.sh run selects
what it says from the asv suite (so a renamed benchmark cannot empty it silently), and bench_compare.sh
refuses what it cannot compare before it builds anything. Their measurements (false alarms, a caught
slowdown, the history) are in docs/notes/2026-11-performance-regression-check.md, not here."""
import importlib
import inspect
import itertools
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def subset_patterns(array="SUBSET"):
    """The regular expressions of tools/bench_subset.sh's SUBSET, or of its REST (each after a -b)."""
    text = (ROOT / "tools" / "bench_subset.sh").read_text()
    body = text[text.index(f"\n{array}=(") + 1:]
    body = body[:body.index("\n)")]
    return [m.group(2) for m in re.finditer(r"-b (['\"])(.*?)\1", body)]


def suite():
    """The asv suite's modules {stem: module}, imported as the package ``benchmarks`` (asv_bench/ on the path
    while importing)."""
    sys.path.insert(0, str(ROOT / "asv_bench"))
    try:
        return {path.stem: importlib.import_module(f"benchmarks.{path.stem}")
                for path in sorted((ROOT / "asv_bench" / "benchmarks").glob("bench_*.py"))}
    finally:
        sys.path.remove(str(ROOT / "asv_bench"))


def suite_names(modules):
    """Every benchmark of the suite as asv matches a -b pattern against it: name(p1, p2, ...) with the
    parameters' reprs for a parameterised one."""
    names = []
    for stem, mod in modules.items():
        for cls_name, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ != mod.__name__ or cls_name.startswith("_"):
                continue
            for attr in dir(cls):
                if not re.match(r"(time|peakmem|track|mem)_", attr):
                    continue
                base = f"{stem}.{cls_name}.{attr}"
                params = getattr(cls, "params", [])
                if params and not isinstance(params[0], list):
                    params = [params]
                combos = itertools.product(*params) if params else [None]
                names += [base if c is None else f"{base}({', '.join(repr(p) for p in c)})" for c in combos]
    return names


def test_the_subset_selects_what_it_says():
    modules = suite()
    names = suite_names(modules)
    bench_band, bench_training = modules["bench_band"], modules["bench_training"]
    steps, band, evaluation, adam = [[n for n in names if re.search(p, n)] for p in subset_patterns()]
    assert len(steps) == len(bench_training.FamilyStep.params[0]) * len(bench_training.OBJECTIVES) == 14
    assert all(n.endswith(", 16)") for n in steps)
    assert len(band) == len(bench_band.KERNELS) * len(bench_band.STENCILS)
    assert all(", 256, 100, " in n for n in band)
    assert evaluation == ["bench_evaluate.ImportanceSampling.time_importance_sampling('diagonal')",
                          "bench_evaluate.ImportanceSampling.time_importance_sampling('extgrid')"]
    assert adam == ["bench_kernels.Adam.time_update(1310816)"]


def test_the_subset_and_the_rest_split_the_suite():
    """Every benchmark and parameter combination is in exactly one of SUBSET and REST, so that the subset's
    history and ALL=1's fill-in together measure the whole suite, nothing twice."""
    names = suite_names(suite())
    chosen = {kind: {n for n in names if any(re.search(p, n) for p in subset_patterns(kind))}
              for kind in ("SUBSET", "REST")}
    assert not chosen["SUBSET"] & chosen["REST"], sorted(chosen["SUBSET"] & chosen["REST"])[:5]
    assert chosen["SUBSET"] | chosen["REST"] == set(names), sorted(set(names) - chosen["SUBSET"] - chosen["REST"])[:5]
    # asv matches a pattern against a benchmark's bare name too: none of REST's may take a subset benchmark whole
    for base in {n.split("(")[0] for n in chosen["SUBSET"]}:
        assert not any(re.search(p, base) for p in subset_patterns("REST")), base


def test_bench_compare_refuses_an_unknown_commit_before_building():
    out = subprocess.run(["bash", str(ROOT / "tools" / "bench_compare.sh"), "no-such-commit-here"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    out = subprocess.run(["bash", str(ROOT / "tools" / "bench_compare.sh")], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "usage: tools/bench_compare.sh BASE [HEAD]" in out.stderr
