"""Compile gvae's Numba kernels into their in-tree cache, the work split over several processes:
``python -m tests.warm_kernels PART PARTS`` runs every PARTS-th group of calls from PART.

Numba compiles a kernel in the process that first calls it and caches it on disk. On a cold cache each
pytest-xdist worker would compile the same kernels for itself (most of a cold run's time); conftest.py
instead starts one of these processes per worker before the workers start, each compiling a share, so the
workers find the cache warm. A kernel these calls miss still compiles where a test first calls it."""
import subprocess
import sys
from pathlib import Path

import numpy as np

from gvae import kernels
from gvae.kernels.band import selected_inversion_cpu as inversion
from tests.band_reference import random_factor

STENCILS = (((0,), 5), ((0, 1), 9), ((0, 1, 3), 12), ((0, 1, 4, 5, 6), 14))


def _band(dtype):
    """Every band function and its gradient, on each kind of stencil, with broadcast right-hand sides."""
    rng = np.random.default_rng(0)
    for offsets, n in STENCILS:
        L = random_factor(rng, (3,), offsets, n, dtype=dtype)
        b = rng.standard_normal((2, 3, n)).astype(dtype)
        for f in (kernels.band_solve_t, kernels.band_solve, kernels.band_matvec_t, kernels.band_matvec):
            f(L, offsets, b)
        kernels.band_outer(b, b, offsets, (3,))
        kernels.band_outer(b, b, offsets, ())
        kernels.band_logdet(L)
        kernels.band_logdet_grad(L, np.ones(3))
        kernels.band_trace_inv(L, offsets)
        kernels.band_diag_inv(L, offsets)
        kernels.band_trace_inv_grad(L, offsets, np.ones(3))
        kernels.band_diag_inv_grad(L, offsets, np.ones((3, n)))
        full = kernels.full_band(offsets[-1])
        A = np.zeros((3, len(full), n), dtype)
        A[:, 0] = 2.0  # 2 I: positive definite on any band
        C = kernels.band_cholesky(A, full)
        kernels.band_cholesky_grad(C, full, np.ones_like(C))


def _band_lanes(dtype):
    """The one-lane and eight-lane blocks of the gradient sweep, which the dispatch picks by band size."""
    rng = np.random.default_rng(1)
    offsets = (0, 1, 4, 5, 6)
    L = random_factor(rng, (8,), offsets, 20, dtype=dtype)
    offs, g = np.array(offsets, dtype=np.int64), np.ones(8, dtype=dtype)
    for variant in (inversion._grad_blocks_x1, inversion._grad_blocks_x8):
        variant(L, offs, g[:, None], np.zeros_like(L), 0, 8, 20)


def _model(dtype):
    """A training step's kernels: every posterior family's ELBO and IWAE gradients, and Adam."""
    from gvae.autodiff import value_and_grad
    from gvae.model import FAMILIES, VAE
    from gvae.model.objectives import training_loss
    from gvae.training.adam import Adam
    rng = np.random.default_rng(2)
    x = (rng.random((6, 16)) < 0.4).astype(dtype)
    for name in sorted(FAMILIES):
        model = VAE(16, 6, [8], "elu", posterior=name, dtype=dtype)
        params = model.new_params(rng)
        for K, iwae in ((1, False), (3, True)):
            eps = rng.standard_normal((K, 6, model.noise_size)).astype(dtype)
            _, grads = value_and_grad(training_loss, has_aux=True)(params.views, model, x, eps, "analytic", 1.0, iwae)
        Adam(params.flat).update(np.concatenate([np.ravel(g) for g in grads.values()]).astype(dtype))


def _activations(dtype):
    rng = np.random.default_rng(3)
    x, W, b = (rng.standard_normal(s).astype(dtype) for s in ((4, 5), (5, 3), (3,)))
    for name in kernels.ACTIVATIONS:
        y = kernels.bias_activation(x @ W, b, name)
        kernels.bias_activation_grad(np.ones_like(y), y, name)
    for kernel in kernels.MMD_KERNELS:
        kernels.mmd(x, x[:2], kernel, want_grad=True)


GROUPS = [(_band, np.float64), (_band, np.float32), (_model, np.float32), (_model, np.float64),
          (_band_lanes, np.float64), (_band_lanes, np.float32), (_activations, np.float32), (_activations, np.float64)]


def script_package(root):
    """The folder of the gvae that a script in ``root/examples`` imports (found, not imported), or None.
    The tests import the clone's (``root/gvae``: pytest puts ``root`` on the path); a script imports the
    installed one, which is the clone's only with ``pip install -e .``. Numba caches kernels beside their
    source, so another copy (a plain install, an editable install's strict link tree) has a cache of its
    own, cold whatever the tests compiled: issue 50 saw the PyTorch example's first epoch take 151 s."""
    found = subprocess.run([sys.executable, "-c", "import importlib.util as u; s = u.find_spec('gvae'); "
                            "print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')"],
                           cwd=Path(root) / "examples", capture_output=True, text=True, timeout=60)
    folder = found.stdout.strip()
    return Path(folder) if found.returncode == 0 and folder else None


def main(part, parts):
    for fn, dtype in GROUPS[part::parts]:
        fn(dtype)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
