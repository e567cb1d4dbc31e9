import os

import pytest
from hypothesis import HealthCheck, settings

# Numba compiles on first call, so no per-example deadline; CI keeps example counts small.
settings.register_profile("ci", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: touches real MNIST (set GVAE_INTEGRATION=1)")
    config.addinivalue_line("markers", "slow: over about a second warm (subprocesses, sweeps on Dask, refinements "
                                       "to convergence); the quick loop leaves them out: -m 'not slow'")


@pytest.fixture
def data_file(tmp_path):
    """A small data set of 784-pixel images in the .npz layout ``gvae --data`` reads."""
    from tests.helpers import write_data
    return write_data(tmp_path / "tiny.npz")
