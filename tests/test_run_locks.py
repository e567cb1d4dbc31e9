"""The lock of a run (or sweep) folder and the links a hostile folder may hold (issue 24).

gvae never writes through a link in a run folder: its lock file is opened without following one (a link
to a user's file wiped that file; a dangling one created a file outside the folder), and every other file
is written by a rename onto its name, which replaces a link. The lock file is removed when released,
without letting two processes hold the folder at once."""
import multiprocessing
import os

import pytest

from gvae.cli import main
from gvae.io.files import remove_stale_temporaries
from gvae.sweep.execute import LOCK_NAME as SWEEP_LOCK_NAME
from gvae.training import rundir
from tests.test_run_safety import lines, train

PRECIOUS = "IMPORTANT DATA\n"


@pytest.fixture
def trained(tmp_path, data_file):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    return out


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "bashrc"
    path.write_text(PRECIOUS)
    return path


def commands(out, data_file):
    return {"resume": ["train", "--resume", "--data", str(data_file), "--out", str(out), "--epochs", "2", "--quiet"],
            "overwrite": ["train", "--overwrite", "--data", str(data_file), "--out", str(out), "--limit", "80",
                          "--latent", "3", "--hidden", "8", "--epochs", "1", "--quiet"],
            "eval": ["eval", str(out), "--data", str(data_file), "--iw-samples", "2", "--quiet"],
            "sample": ["sample", str(out), "--n", "4"],
            "analyze": ["analyze", str(out), "--data", str(data_file), "--points", "2", "--iw-samples", "2",
                        "--refine-steps", "2", "--quiet"]}


# 1. Links and other things planted where the lock file goes

@pytest.mark.parametrize("command", ["resume", "overwrite", "eval", "sample", "analyze"])
def test_a_lock_linked_to_a_users_file_leaves_the_file_intact(trained, data_file, user_file, capsys, command):
    (trained / rundir.LOCK_NAME).symlink_to(user_file)
    capsys.readouterr()
    assert main(commands(trained, data_file)[command]) == 2
    err = lines(capsys)
    assert len(err) == 1 and "is a symbolic link" in err[0] and rundir.LOCK_NAME in err[0]
    assert user_file.read_text() == PRECIOUS


def test_a_dangling_lock_link_creates_nothing(trained, data_file, tmp_path, capsys):
    target = tmp_path / "created-by-gvae"
    (trained / rundir.LOCK_NAME).symlink_to(target)
    for argv in commands(trained, data_file).values():
        assert main(argv) == 2
        assert "is a symbolic link" in lines(capsys)[0]
        assert not os.path.lexists(target)


def test_a_sweep_lock_link_is_refused_too(tmp_path, user_file):
    (tmp_path / SWEEP_LOCK_NAME).symlink_to(user_file)
    with pytest.raises(rundir.RunFolderError, match="is a symbolic link"):
        with rundir.folder_lock(tmp_path, SWEEP_LOCK_NAME, "sweep folder", command="gvae sweep"):
            pass
    assert user_file.read_text() == PRECIOUS


def test_a_lock_that_is_a_hard_link_or_not_a_file_is_refused(tmp_path, user_file):
    run = tmp_path / "run"
    run.mkdir()
    os.link(user_file, run / rundir.LOCK_NAME)  # a second name of the user's file: truncating it would wipe it
    with pytest.raises(rundir.RunFolderError, match="other names"):
        with rundir.folder_lock(run):
            pass
    assert user_file.read_text() == PRECIOUS
    (run / rundir.LOCK_NAME).unlink()
    os.mkfifo(run / rundir.LOCK_NAME)
    with pytest.raises(rundir.RunFolderError, match="not a regular file"):
        with rundir.folder_lock(run):
            pass
    (run / rundir.LOCK_NAME).unlink()
    (run / rundir.LOCK_NAME).mkdir()
    with pytest.raises(rundir.RunFolderError, match="is a folder"):
        with rundir.folder_lock(run):
            pass


def test_links_among_the_run_files_are_replaced_not_written_through(trained, data_file, user_file, tmp_path):
    # --overwrite removes a linked eval.json (the link, not the file); a resumed run writes its summary.json
    # and metrics by a rename, which replaces a link; a temporary's name linked to a file removes the link.
    (trained / "eval.json").symlink_to(user_file)
    (trained / ".checkpoint.npz.x1y2.tmp.npz").symlink_to(user_file)
    assert remove_stale_temporaries(trained) == [".checkpoint.npz.x1y2.tmp.npz"]
    summary = tmp_path / "summary-copy.json"
    summary.write_text((trained / "summary.json").read_text())
    (trained / "summary.json").unlink()
    (trained / "summary.json").symlink_to(summary)
    assert main(commands(trained, data_file)["resume"]) == 0
    assert not (trained / "summary.json").is_symlink() and summary.read_text() != (trained / "summary.json").read_text()
    assert main(commands(trained, data_file)["overwrite"]) == 0
    assert not os.path.lexists(trained / "eval.json")
    assert user_file.read_text() == PRECIOUS


def test_a_run_folder_that_is_a_link_is_used_as_its_target(tmp_path, data_file):
    (tmp_path / "real").mkdir()
    (tmp_path / "run").symlink_to(tmp_path / "real")
    assert train(data_file, tmp_path / "run", "--epochs", "1") == 0
    assert main(commands(tmp_path / "run", data_file)["eval"]) == 0
    assert (tmp_path / "real" / "eval.json").is_file()


# 2. The lock file goes with its holder, and one holder at a time

def test_the_lock_file_is_removed_when_released(trained, data_file, tmp_path):
    for name in ("resume", "eval", "sample"):
        assert main(commands(trained, data_file)[name]) == 0
        assert not os.path.lexists(trained / rundir.LOCK_NAME)
    with rundir.folder_lock(tmp_path / "sweep", SWEEP_LOCK_NAME, command="gvae sweep"):
        assert (tmp_path / "sweep" / SWEEP_LOCK_NAME).read_text() == f"{os.getpid()} gvae sweep\n"
    assert not os.path.lexists(tmp_path / "sweep" / SWEEP_LOCK_NAME)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    # A lock file that a killed process left (the kernel released its lock) is locked by the next one.
    (tmp_path / rundir.LOCK_NAME).write_text("999999999 gvae train\n")
    with rundir.folder_lock(tmp_path, command="gvae eval"):
        assert (tmp_path / rundir.LOCK_NAME).read_text() == f"{os.getpid()} gvae eval\n"
    assert not os.path.lexists(tmp_path / rundir.LOCK_NAME)


def _take_turns(folder, turns, failures):
    """Lock ``folder`` ``turns`` times; while holding it, own a marker no other holder may own at once."""
    marker = os.path.join(folder, "holder")
    taken = 0
    while taken < turns:
        try:
            with rundir.folder_lock(folder):
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:  # another process holds the folder too
                    failures.value += 1
                    return
                os.close(fd)
                os.unlink(marker)
                taken += 1
        except rundir.RunFolderError as e:
            if "being written by another gvae process" not in str(e):  # refused for another reason
                failures.value += 1
                return


@pytest.mark.parametrize("when", ["before its check", "before its lock"])
def test_a_process_that_locked_a_removed_lock_file_opens_the_name_again(tmp_path, monkeypatch, when):
    # The holder removes the lock file as it releases it; a process that opened the file before its removal
    # (and checked it before or after) and locks it after must neither be refused (the file has no name
    # left) nor think it holds the folder (beside one that locks the new file).
    holder = rundir.folder_lock(tmp_path, command="gvae first")
    holder.__enter__()

    def release():
        nonlocal holder
        if holder is not None:
            holder.__exit__(None, None, None)
            holder = None

    real_fstat, real_open = os.fstat, rundir._open_lock
    if when == "before its check":  # between the second one's open and its fstat
        monkeypatch.setattr(os, "fstat", lambda fd: (release(), real_fstat(fd))[1])
    else:  # between its open (and check) and its flock
        monkeypatch.setattr(rundir, "_open_lock", lambda lock, what: (real_open(lock, what), release())[0])
    with rundir.folder_lock(tmp_path, command="gvae second"):
        monkeypatch.undo()
        with pytest.raises(rundir.RunFolderError, match="gvae second"):  # the name leads to the file it holds
            with rundir.folder_lock(tmp_path, command="gvae third"):
                pass
    assert holder is None and not os.path.lexists(tmp_path / rundir.LOCK_NAME)


@pytest.mark.slow
def test_processes_never_hold_the_folder_at_once(tmp_path):
    # The races above between real processes (about 0.5 s: 900 lockings; without the check of the name,
    # 9 in 10 runs of this test failed, and so did every run that refused a lock file of no name).
    context = multiprocessing.get_context("fork")
    failures = context.Value("i", 0)
    workers = [context.Process(target=_take_turns, args=(str(tmp_path), 300, failures)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0] and failures.value == 0
    assert not os.path.lexists(tmp_path / rundir.LOCK_NAME)
