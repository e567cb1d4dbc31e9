"""Offsets are validated the same way whatever was validated before (the cache cannot launder them)."""
import numpy as np
import pytest

from gvae import kernels

FUNCTIONS = {
    "band_solve_t": lambda L, o: kernels.band_solve_t(L, o, np.ones(16)),
    "band_solve": lambda L, o: kernels.band_solve(L, o, np.ones(16)),
    "band_matvec_t": lambda L, o: kernels.band_matvec_t(L, o, np.ones(16)),
    "band_matvec": lambda L, o: kernels.band_matvec(L, o, np.ones(16)),
    "band_trace_inv": kernels.band_trace_inv,
    "band_trace_inv_grad": lambda L, o: kernels.band_trace_inv_grad(L, o, np.ones(2)),
    "band_diag_inv": kernels.band_diag_inv,
    "band_diag_inv_grad": lambda L, o: kernels.band_diag_inv_grad(L, o, np.ones(16)),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_offsets_that_are_not_ints_are_refused_even_after_the_int_version_was_used(name):
    fn = FUNCTIONS[name]
    L = np.ones((2, 3, 16))
    fn(L, (0, 1, 4))  # fills the validation cache with the int tuple
    for bad in [(0, 1.0, 4), (0, True, 4), (0, np.float64(1), 4), (np.bool_(False), 1, 4)]:
        with pytest.raises(ValueError, match=f"{name}: offsets must be ints"):
            fn(L, bad)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_unhashable_offsets_and_numpy_ints(name):
    fn, L = FUNCTIONS[name], np.ones((2, 3, 16))
    with pytest.raises(ValueError, match=rf"{name}: offsets must be ints, got \(0, \[1\], 4\)"):
        fn(L, (0, [1], 4))
    np.testing.assert_array_equal(fn(L, np.array([0, 1, 4])), fn(L, [0, 1, 4]))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_missing_offsets_is_a_clear_error(name):
    with pytest.raises(ValueError, match=f"{name}: offsets must be a sequence of ints, got None"):
        FUNCTIONS[name](np.ones((2, 3, 16)), None)
