"""The NumPyro guides' tests (tests/numpyro_files.py), run by a child pytest in a fresh process."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .numpyro_files import NUMPYRO_FILES

TESTS = Path(__file__).resolve().parent


@pytest.mark.slow
def test_the_numpyro_guides_tests_pass_in_a_process_of_their_own():
    pytest.importorskip("numpyro")
    env = dict(os.environ, GVAE_NUMPYRO_CHILD="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *(str(TESTS / name) for name in NUMPYRO_FILES)],
                            cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1], result.stdout[-2000:]
