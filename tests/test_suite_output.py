"""What a green run of the suite prints: the peers' warnings that gvae cannot remove are filtered, each for
its reason (tests/conftest.py), and the skips say why they skipped."""
import warnings
from types import SimpleNamespace

from _pytest.config import parse_warning_filter

from tests.conftest import skip_reasons

JAX_FORK = ("os.fork() was called. os.fork() is incompatible with multithreaded code, and JAX is multithreaded, "
            "so this will likely lead to a deadlock.")
TORCH_JIT = "`torch.jit.script` is deprecated. Please switch to `torch.compile` or `torch.export`."


def _shown(pytestconfig, message, category, module):
    """Whether the suite's warning filters show ``message`` warned from ``module``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        for line in pytestconfig.getini("filterwarnings"):
            action, text, kind, where, lineno = parse_warning_filter(line, escape=False)
            warnings.filterwarnings(action, text, kind, where, lineno)
        warnings.warn_explicit(message, category, f"{module.replace('.', '/')}.py", 1, module=module)
    return bool(caught)


def test_the_peers_warnings_are_filtered_and_no_other(pytestconfig):
    assert not _shown(pytestconfig, JAX_FORK, RuntimeWarning, "multiprocessing.popen_fork")
    assert not _shown(pytestconfig, JAX_FORK, RuntimeWarning, "subprocess")
    assert not _shown(pytestconfig, TORCH_JIT, DeprecationWarning, "torch.jit._script")
    assert not _shown(pytestconfig, TORCH_JIT.replace("script`", "script_method`"), DeprecationWarning,
                      "torch.jit._script")
    # gvae's own warnings, and the same deprecation from gvae's code, still show
    assert _shown(pytestconfig, TORCH_JIT, DeprecationWarning, "gvae.torch.ops")
    assert _shown(pytestconfig, "invalid value encountered in subtract", RuntimeWarning, "gvae.kernels.arithmetic_cpu")


def test_the_skips_are_counted_by_their_reason():
    def skipped(where, reason):
        return SimpleNamespace(longrepr=(where, 1, f"Skipped: {reason}"))
    reports = [skipped("tests/test_cuda.py", "CuPy is not installed"), skipped("tests/test_torch_cuda.py", "no GPU"),
               skipped("tests/test_cuda.py", "CuPy is not installed"), skipped("tests/test_more_cuda.py", "no GPU"),
               skipped("tests/test_mnist_cache.py", "set GVAE_INTEGRATION=1"), skipped("tests/test_cuda.py", "no GPU")]
    assert skip_reasons(reports) == [(3, "no GPU"), (2, "CuPy is not installed"), (1, "set GVAE_INTEGRATION=1")]
