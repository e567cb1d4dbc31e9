"""An evaluation says its work and estimated time before it starts, says what an interruption kept, and
goes on only from progress that is its own: a damaged partial file (rows not in whole batches, a result
missing) or forged results (a valid key, altered numbers) are removed with one line and the evaluation
starts over, to the result of one that ran through."""
import time

import numpy as np
import pytest

import gvae.evaluation.evaluate as ev
from gvae.cli import main
from tests.test_iwae import factor_analysis

SETTINGS = dict(ks=(1, 5), seed=3, batch_size=5, progress=False)
K = 20
# One batch at a time, one pass each (the interruptions below count passes), whatever thread count earlier
# tests left: on gvae's threads batches run side by side (tests/test_eval_side_by_side.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem():
    """(model, params, x, the per-example results and means of an evaluation that ran through)."""
    model, params, x, _ = factor_analysis(seed=6, points=30)
    full, means, _ = ev.evaluate(model, params, x, K, **SETTINGS)
    return model, params, x, full, means


def interrupted(problem, path, monkeypatch, at_call):
    """Stop an evaluation at its ``at_call``-th decoder pass (one per batch here): its partial file."""
    model, params, x = problem[:3]
    real, calls = ev._log_weights_into, []

    def counted(*args):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return real(*args)

    with monkeypatch.context() as m:
        m.setattr(ev, "_log_weights_into", counted)
        with pytest.raises(KeyboardInterrupt):
            ev.evaluate(model, params, x, K, **SETTINGS, partial=path, save_seconds=1e9)
    return path


def rewrite(path, **changes):
    """The partial file with ``changes`` (name -> array, or None to drop it)."""
    with np.load(path) as f:
        content = {k: f[k] for k in f.files}
    content.update(changes)
    np.savez(path, **{k: v for k, v in content.items() if v is not None})


def evaluated(problem, path, capsys):
    """Evaluate with the partial file; (per-example results, means, the lines on stderr)."""
    model, params, x = problem[:3]
    capsys.readouterr()
    per, means, _ = ev.evaluate(model, params, x, K, **SETTINGS, partial=path)
    return per, means, capsys.readouterr().err.strip().splitlines()


def same_as_uninterrupted(problem, per, means):
    for key in problem[3]:
        np.testing.assert_array_equal(per[key], problem[3][key])
    assert means == problem[4]


# Damage: start over with one line, never stall

@pytest.mark.parametrize("damage, why", [
    ("rows", "is damaged: it holds 13 rows, expected a multiple of the batch size 5 up to 30"),
    ("result", "is damaged: it holds the results ['iwae_1', 'log_likelihood'], expected"),
    ("seconds", "is damaged: its seconds are -5.0"),
    ("shape", "is damaged: its results are not float64 arrays of one value per row"),
    ("cut", "is damaged (not a readable .npz archive"),
    ("flipped", "is damaged (cannot read result_log_likelihood: Bad CRC-32"),
])
def test_a_damaged_partial_file_is_removed_and_the_evaluation_starts_over(problem, tmp_path, monkeypatch, capsys,
                                                                           damage, why):
    path = interrupted(problem, tmp_path / "p.npz", monkeypatch, at_call=4)  # 15 rows kept
    with np.load(path) as f:
        assert int(f["rows"]) == 15
        kept = {k: f[k] for k in f.files}
    if damage == "rows":  # as when 150 rows are kept of batches of 100
        rewrite(path, rows=np.array(13), **{k: v[:13] for k, v in kept.items() if k.startswith("result_")})
    elif damage == "result":
        rewrite(path, result_iwae_5=None)
    elif damage == "seconds":
        rewrite(path, seconds=np.array(-5.0))
    elif damage == "shape":
        rewrite(path, result_iwae_1=kept["result_iwae_1"].astype(np.float32))
    elif damage == "cut":
        path.write_bytes(path.read_bytes()[:-40])
    else:  # one bit of a stored result: the zip's checksum of the member no longer matches
        raw = bytearray(path.read_bytes())
        at = bytes(raw).index(kept["result_log_likelihood"].tobytes())
        raw[at + 3] ^= 1
        path.write_bytes(bytes(raw))
    per, means, err = evaluated(problem, path, capsys)
    assert len(err) == 1 and err[0].startswith(f"log p(x): starting over: {path} {why}")
    same_as_uninterrupted(problem, per, means)
    assert not path.exists()  # removed at once (the run's next save would have replaced it)


# Forgery: a stored batch is recomputed; what no evaluation gives is refused

@pytest.mark.parametrize("forgery, why", [
    ("every row's log p(x) raised", "holds results that differ from a recomputation of rows"),
    ("L_5 above log p(x)", "holds results no evaluation gives: iwae_5"),
    ("NaN", "holds NaN or +inf in log_likelihood"),
])
def test_forged_results_with_a_valid_key_are_refused(problem, tmp_path, monkeypatch, capsys, forgery, why):
    path = interrupted(problem, tmp_path / "p.npz", monkeypatch, at_call=4)
    with np.load(path) as f:
        ll, l5 = f["result_log_likelihood"].copy(), f["result_iwae_5"].copy()
    if forgery == "NaN":
        ll[7] = np.nan
    elif forgery == "L_5 above log p(x)":
        l5[7] = ll[7] + 0.5
    else:  # one row of each batch: whichever batch is recomputed holds one (log p(x) = +199883 was seen)
        ll[::5] = 199883.0
    rewrite(path, result_log_likelihood=ll, result_iwae_5=l5)
    per, means, err = evaluated(problem, path, capsys)
    assert len(err) == 1 and err[0].startswith(f"log p(x): starting over: {path} {why}")
    same_as_uninterrupted(problem, per, means)


def test_an_honest_partial_file_passes_the_check_and_goes_on_to_the_same_result(problem, tmp_path, monkeypatch,
                                                                                 capsys):
    path = interrupted(problem, tmp_path / "p.npz", monkeypatch, at_call=4)
    with np.load(path) as f:
        stored = int(f["rows"]), {k[len("result_"):]: f[k] for k in f.files if k.startswith("result_")}
    for _ in range(3):  # the batch recomputed is drawn at random: each draw must pass, bit for bit
        assert ev._stored_problem(*problem[:3], stored, K, SETTINGS["seed"] + 1, SETTINGS["ks"], 5, 256) is None
    per, means, err = evaluated(problem, path, capsys)
    assert err == []  # progress=False: no line, and no note of damage
    same_as_uninterrupted(problem, per, means)


def test_a_partial_file_of_another_evaluation_is_replaced_saying_so(problem, tmp_path, monkeypatch, capsys):
    path = interrupted(problem, tmp_path / "p.npz", monkeypatch, at_call=4)
    model, params, x = problem[:3]
    capsys.readouterr()
    ev.evaluate(model, params, x[:20], K, **SETTINGS, partial=path)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"log p(x): starting over: {path} holds the progress of another evaluation (other parameters, "
                   "data or settings)"]


# The work and its time, said before it starts

def test_the_estimate_scales_the_timed_trial_to_the_whole_work(problem, monkeypatch):
    model, params, x = problem[:3]
    real = ev._log_weights_into

    def slow(*args):  # every decoder pass takes 20 ms more than it would
        time.sleep(0.02)
        return real(*args)

    monkeypatch.setattr(ev, "_log_weights_into", slow)
    assert ev._chunk(model, K, 5, 256) == K  # one pass per batch of 5 rows: 6 passes for 30 rows
    seconds, trial = ev.estimate_seconds(model, params, x, K, batch_size=5, trial_seconds=0.05)
    assert 6 * 0.02 <= seconds < 6 * 0.04 and 0.05 <= trial < 0.2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tests.helpers import write_data
    folder = tmp_path_factory.mktemp("eval")
    write_data(folder / "d.npz", n=100)
    assert main(["train", "--data", str(folder / "d.npz"), "--limit", "40", "--latent", "3", "--hidden", "8",
                 "--batch-size", "20", "--epochs", "1", "--quiet", "--out", str(folder / "run")]) == 0
    return folder / "run", folder / "d.npz"


def test_gvae_eval_says_its_work_and_estimated_time_before_it_starts(run, capsys):
    out, data = run
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(data), "--iw-samples", "40", "--batch-size", "25"]) == 0
    err = capsys.readouterr().err
    first = err.strip().splitlines()[0]
    assert first.startswith("log p(x): 100 images x 40 samples = 4,000 decoder passes in 4 batches of 25: ")
    assert "on this device (an estimate from a " in first and "s trial); an interruption keeps the batches done in " \
        "eval_k40.partial.npz (the first ends in " in first and "about under" not in first
    assert err.index(first) < err.index("log p(x), K=40")  # before the progress lines
    assert main(["eval", str(out), "--data", str(data), "--iw-samples", "40", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_ctrl_c_says_whether_anything_was_kept(run, capsys, monkeypatch):
    out, data = run
    # One thread: one batch at a time, so that the second pass is in the second batch (on more threads
    # batches run side by side: tests/test_eval_side_by_side.py).
    argv = ["eval", str(out), "--data", str(data), "--iw-samples", "20", "--batch-size", "25", "--quiet",
            "--threads", "1"]
    real, calls = ev._log_weights_into, []

    def stopped(*args, at):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(ev, "_log_weights_into", lambda *a: stopped(*a, at=1))  # in the first batch
    capsys.readouterr()
    assert main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "gvae: interrupted; nothing was kept (an evaluation keeps its progress once a batch of 25 images is "
        "done), so the same gvae eval command starts over")
    assert not list(out.glob("*partial*"))
    calls.clear()
    monkeypatch.setattr(ev, "_log_weights_into", lambda *a: stopped(*a, at=2))  # in the second batch
    assert main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "gvae: interrupted; the same gvae eval command goes on from the images it finished")
    with np.load(out / "eval_k20.partial.npz") as f:
        assert int(f["rows"]) == 25


def test_gvae_eval_into_a_log_prints_a_line_per_tenth_of_its_batches(run, capsys):
    """Without a terminal the bar gives way to one line per tenth of the work (a bar's every redraw would
    stay in the log), each with the time so far and the time left."""
    out, data = run
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(data), "--iw-samples", "40", "--batch-size", "5"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("log p(x), K=40: ")]
    assert len(lines) == 10, err  # 20 batches of 5 images: a line every 2
    assert lines[0].startswith("log p(x), K=40: 400 of 4,000 samples (10%) in ") and lines[0].endswith(" left")
    assert lines[-1].startswith("log p(x), K=40: 4,000 of 4,000 samples (100%) in ") and "left" not in lines[-1]


def test_gvae_eval_on_a_terminal_draws_its_bar(run, monkeypatch):
    from tests.test_cli import Terminal
    out, data = run
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["eval", str(out), "--data", str(data), "--iw-samples", "40", "--batch-size", "5"]) == 0
    assert "log p(x), K=40: 100%|" in terminal.getvalue() and "\r" in terminal.getvalue()


def test_a_short_estimate_reads_under_1_s_not_about_under_1_s(problem, monkeypatch):
    model, params, x = problem[:3]
    monkeypatch.setattr(ev, "estimate_seconds", lambda *a, **k: (0.6, 0.5))
    line = ev._work_line(model, params, x, K, 5, 256, "eval_k20.partial.npz")
    assert "batches of 5: under 1 s on this device" in line and "(the first ends in under 1 s)" in line
    monkeypatch.setattr(ev, "estimate_seconds", lambda *a, **k: (84.0, 0.5))
    line = ev._work_line(model, params, x, K, 5, 256, "eval_k20.partial.npz")
    assert "about 1 min 24 s on this device" in line and "(the first ends in about 14 s)" in line


@pytest.mark.parametrize("enabled, terminal, lines, shown", [(True, True, True, "bar"), (True, False, True, "lines"),
                                                             (True, False, False, None), (False, True, True, None),
                                                             (False, False, True, None)])
def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(monkeypatch, enabled, terminal, lines, shown):
    from gvae.training.progress import ProgressLines, progress_bar
    from tests.test_cli import Terminal
    stderr = Terminal() if terminal else __import__("io").StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    bar = progress_bar(enabled, 40, "work", lines=lines)
    for _ in range(40):
        bar.update(1)
    bar.close()
    assert isinstance(bar, ProgressLines) == (shown == "lines")
    text = stderr.getvalue()
    assert ("40/40" in text) == (shown == "bar") and (text.count("\n") == 10) == (shown == "lines")
    assert (text == "") == (shown is None)


def test_lines_of_a_loop_that_stops_early_say_so_against_the_plan(capsys):
    """gvae analyze's refinement said "1,200 of 2,000 steps (60%)", then, stopped at a plateau, "1,200 of
    1,200 (100%)": the lines after the total is lowered say by how much and why, against the plan."""
    from gvae.training.progress import ProgressLines
    lines = ProgressLines(2000, "refining q for 100 points", unit="step")
    lines.update(1200)
    lines.total -= 800
    lines.refresh()
    printed = capsys.readouterr().err.splitlines()
    assert printed[0].startswith("refining q for 100 points: 1,200 of 2,000 steps (60%) in ")
    assert printed[-1].startswith("refining q for 100 points: 1,200 of 1,200 steps (100%) in ")
    assert printed[-1].endswith(" (800 fewer than the 2,000 planned: stopped early)")
    assert all("fewer" not in line for line in printed[:-1])
