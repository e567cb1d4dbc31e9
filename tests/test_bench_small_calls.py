"""benchmarks/bench_small_calls.py: one line per size and gap, and a clear refusal of bad input."""
import importlib.util
from pathlib import Path

import pytest

from gvae import kernels

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_small_calls.py"
_spec = importlib.util.spec_from_file_location("bench_small_calls", _path)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_it_prints_a_median_per_size_and_gap(capsys):
    try:
        bench.main(["--rows", "3", "5", "--gap", "0", "0.0001", "--calls", "3", "--threads", "2"])
    finally:
        kernels.set_threads(1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"{r} x 784, 2 thread(s), {g} ms before each call" for r in (3, 5) for g in ("0", "0.1")]
    assert all(float(line.split("median ")[1].split(" us")[0]) > 0 for line in lines)


@pytest.mark.parametrize("bad", [["--rows", "0"], ["--calls", "0"], ["--gap", "-1"], ["--threads", "0"]])
def test_bad_input_is_refused_with_a_message(bad, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.main(bad)
    assert stop.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err
