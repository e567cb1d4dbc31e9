"""A capture that was refused (a CUDA graph's, gvae/kernels/cuda/capture.py) names where in gvae it stopped
(runs on the CPU: only the traceback is read)."""
import re

import numpy as np
import pytest

from gvae import kernels
from gvae.kernels.cuda.capture import refused_where


def test_a_refusal_names_the_innermost_gvae_function_and_line():
    L = np.ones((1, 2, 4))
    L[0, 0, 1] = -1.0  # a factor with a negative diagonal: band_solve refuses it
    with pytest.raises(ValueError) as info:
        kernels.band_solve(L, (0, 1), np.ones(4))
    where = refused_where(info.value)
    assert re.fullmatch(r" in \w+ \(gvae/kernels/[\w/]+\.py:\d+\)", where), where
    frames = [line for line in info.traceback if "/gvae/" in str(line.path)]
    assert where.endswith(f":{frames[-1].lineno + 1})")  # pytest counts lines from 0


def test_an_exception_that_never_passed_through_gvae_names_nothing():
    try:
        raise RuntimeError("from elsewhere")
    except RuntimeError as exc:
        assert refused_where(exc) == ""
    assert refused_where(ValueError("never raised")) == ""
