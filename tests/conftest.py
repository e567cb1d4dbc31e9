import os

from hypothesis import HealthCheck, settings

# Numba compiles on first call, so no per-example deadline; CI keeps example counts small.
settings.register_profile("ci", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: touches real MNIST (set GVAE_INTEGRATION=1)")
