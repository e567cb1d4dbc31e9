"""tools/peer_history.py: the StepRatio points read from asv's result files, in commit order."""
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("peer_history", ROOT / "tools" / "peer_history.py")
peer_history = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peer_history)


def _commits(n):
    out = subprocess.run(["git", "log", f"-{n}", "--format=%H %ct"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0 or len(out.stdout.split()) < 2 * n:
        pytest.skip("needs the repository's git history")
    return [line.split() for line in out.stdout.splitlines()]


def _result(folder, commit, values, name="bench_peers.StepRatio.track_vs_jax"):
    record = {"commit_hash": commit, "results": {name: [values, [["'elbo'", "'iwae5'"], ["1", "2"]]]}}
    (folder / f"{commit[:8]}-x.json").write_text(json.dumps(record))


def test_points_read_each_objective_and_thread_count_and_sort_by_commit_date(tmp_path):
    (new, new_date), (old, old_date) = _commits(2)
    _result(tmp_path, new, [0.8, 0.81, None, 0.83])
    _result(tmp_path, old, [1.0, 1.1, 0.9, 1.2])
    (tmp_path / "machine.json").write_text("{}")
    (tmp_path / "other.json").write_text(json.dumps({"commit_hash": new, "results": {"bench_x.T.time_y": [1.0]}}))
    rows = peer_history.points(tmp_path)
    expected = [commit[:7] for _, commit in sorted([(int(old_date), old[:7]), (int(new_date), new[:7])])]
    assert [r[1] for r in rows] == expected
    newest = dict((r[1], r[2]) for r in rows)[new[:7]]
    assert newest == {"JAX": {("elbo", 1): 0.8, ("elbo", 2): 0.81, ("iwae5", 2): 0.83}}


def test_two_result_files_of_one_commit_are_both_kept(tmp_path):
    (commit, _), = _commits(1)
    _result(tmp_path, commit, [0.8, 0.8, 0.8, 0.8])
    record = {"commit_hash": commit, "results": {"bench_peers.StepRatio.track_vs_torch":
                                                 [[0.7, 0.7, 0.7, 0.7], [["'elbo'", "'iwae5'"], ["1", "2"]]]}}
    (tmp_path / f"{commit[:8]}-other-env.json").write_text(json.dumps(record))
    assert sorted(peer for row in peer_history.points(tmp_path) for peer in row[2]) == ["JAX", "PyTorch"]


def test_a_folder_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no asv results"):
        peer_history.points(tmp_path / "nope")
    with pytest.raises(SystemExit, match="no bench_peers.StepRatio"):
        peer_history.points(tmp_path)
