"""The finite-difference check itself (tests/gradcheck.py): it passes a right gradient next to a ReLU kink
and fails a wrong one."""
import numpy as np
import pytest

from gvae import ops
from gvae.autodiff import defvjp, primitive
from tests.gradcheck import check_vjp

# An input 3e-6 from ReLU's kink: central differences at the default steps (1e-5 and up) straddle it.
NEAR_KINK = np.array([3e-6, 0.5, -0.7, 1.2])


def test_a_right_gradient_passes_within_a_step_of_a_kink():
    check_vjp(ops.relu, [NEAR_KINK], seed=0)


def test_a_wrong_gradient_fails_at_every_step():
    off = defvjp(primitive(lambda x: np.maximum(x, 0.0), name="relu_off_by_1e-3"),
                 lambda ans, x: lambda g: 1.001 * g * (x > 0))
    with pytest.raises(AssertionError, match="against the differences"):
        check_vjp(off, [NEAR_KINK], seed=0)
