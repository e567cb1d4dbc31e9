"""The banded-factor kernels of :mod:`gvae.kernels.band` and their differentiable ops, over the latent
size d, the number of factors (batch) and the stencil.

A factor ``L`` holds ``batch`` lower-triangular d x d factors in band storage (batch, K, d); every
right-hand side has one row per factor (batch, d), as in the ELBO step. Stencils: ``diagonal`` (0,),
``chain`` (0, 1), ``grid`` and ``extgrid`` on the most square r x c lattice of d
(:func:`gvae.model.lattice.lattice_shape`), with the slots that would link across the lattice's edges
zeroed as the posterior families do. Off-diagonals are small against the diagonal (row sums below half
of it), so substitutions stay bounded at every d and no timing runs on overflowed values.

Each benchmark's ``setup`` builds its arrays and runs the timed call once on them, so Numba's compilation
(or its load from the cache) and the first touch of the outputs are never timed.
"""
import numpy as np

from gvae import kernels, ops
from gvae.autodiff import value_and_grad
from gvae.model import lattice

from .common import Benchmark

DIMS = [16, 256, 4096]
BATCHES = [1, 100, 2000]
STENCILS = ["diagonal", "chain", "grid", "extgrid"]


def stencil_offsets(stencil, d):
    """The band offsets of ``stencil`` for d latent units, and the lattice (rows, cols) or None."""
    if stencil == "diagonal":
        return (0,), None
    if stencil == "chain":
        return lattice.chain_offsets(), None
    rows, cols = lattice.lattice_shape(d)
    make = {"grid": lattice.grid_offsets, "extgrid": lattice.extgrid_offsets}[stencil]
    return make(rows, cols), (rows, cols)


def band_factor(rng, batch, d, stencil, dtype):
    """(L, offsets): ``batch`` factors of ``stencil`` in ``dtype`` (a NumPy float type), each entry of the
    main diagonal within 1/(2K) of 1.5 and each off-diagonal in [-1/(2K), 1/(2K)), lattice-masked for grid
    and extgrid."""
    offsets, shape = stencil_offsets(stencil, d)
    K = len(offsets)
    # Drawn in the target dtype and scaled in place: the largest factor holds 41 million entries.
    L = rng.random((batch, K, d), dtype=dtype)
    L -= dtype(0.5)
    L *= dtype(1 / K)
    if shape is not None:
        L *= lattice.lattice_mask(offsets, *shape, dtype=dtype)
    L[:, 0] += dtype(1.5)
    return L, offsets


def band_arrays(d, batch, stencil, dtype=np.float32):
    """A factor, its offsets and two right-hand sides of shape (batch, d)."""
    rng = np.random.default_rng(0)
    L, offsets = band_factor(rng, batch, d, stencil, dtype)
    b = rng.standard_normal((batch, d), dtype=dtype)
    g = rng.standard_normal((batch, d), dtype=dtype)
    return L, offsets, b, g


# What each kernel benchmark calls: name -> f(L, offsets, b, g). band_outer is the L-gradient of every
# solve and product (gvae.ops.band), the *_grad kernels the VJPs of the selected inversion.
KERNELS = {
    "band_solve_t": lambda L, o, b, g: kernels.band_solve_t(L, o, b),
    "band_solve": lambda L, o, b, g: kernels.band_solve(L, o, b),
    "band_matvec_t": lambda L, o, b, g: kernels.band_matvec_t(L, o, b),
    "band_matvec": lambda L, o, b, g: kernels.band_matvec(L, o, b),
    "band_outer": lambda L, o, b, g: kernels.band_outer(b, g, o, L.shape[:-2], scale=-1.0),
    "band_trace_inv": lambda L, o, b, g: kernels.band_trace_inv(L, o),
    "band_trace_inv_grad": lambda L, o, b, g: kernels.band_trace_inv_grad(L, o, g[:, 0]),
    "band_diag_inv": lambda L, o, b, g: kernels.band_diag_inv(L, o),
    "band_diag_inv_grad": lambda L, o, b, g: kernels.band_diag_inv_grad(L, o, g),
}


class BandKernel(Benchmark):
    """One call of a band kernel on ``batch`` factors of size d, float32."""

    params = [list(KERNELS), DIMS, BATCHES, STENCILS]
    param_names = ["kernel", "d", "batch", "stencil"]

    def setup(self, kernel, d, batch, stencil):
        self.args = band_arrays(d, batch, stencil)
        self.fun = KERNELS[kernel]
        self.fun(*self.args)

    def time_kernel(self, kernel, d, batch, stencil):
        self.fun(*self.args)


class BandKernelFloat64(Benchmark):
    """The sampling solve and the trace gradient in float64 (checks and float64 training), d = 256."""

    params = [["band_solve_t", "band_trace_inv_grad"], [100], ["chain", "extgrid"]]
    param_names = ["kernel", "batch", "stencil"]

    def setup(self, kernel, batch, stencil):
        self.args = band_arrays(256, batch, stencil, np.float64)
        self.fun = KERNELS[kernel]
        self.fun(*self.args)

    def time_kernel(self, kernel, batch, stencil):
        self.fun(*self.args)


class BandFull(Benchmark):
    """The selected inversion's kernels on full bands (the ``full`` family's factor: K = d, offsets 0 .. d-1),
    ``batch`` 100, float32: by the dense inverse from d = 32 on (gvae/kernels/band/dense_inverse_cpu.py), by
    the recursion at d = 16."""

    params = [["band_trace_inv", "band_trace_inv_grad", "band_diag_inv_grad"], [16, 64, 256]]
    param_names = ["kernel", "d"]

    def setup(self, kernel, d):
        rng = np.random.default_rng(0)
        L = rng.random((100, d, d), dtype=np.float32)
        L -= np.float32(0.5)
        L *= np.float32(1 / d)
        L[:, 0] += np.float32(1.5)
        g = rng.standard_normal((100, d), dtype=np.float32)
        self.args = L, tuple(range(d)), g, g
        self.fun = KERNELS[kernel]
        self.fun(*self.args)

    def time_kernel(self, kernel, d):
        self.fun(*self.args)


class BandLogdet(Benchmark):
    """log det L of ``batch`` factors (reads the main diagonal only, so the stencil does not matter)."""

    params = [DIMS, BATCHES]
    param_names = ["d", "batch"]

    def setup(self, d, batch):
        self.L = band_arrays(d, batch, "chain")[0]
        kernels.band_logdet(self.L)

    def time_logdet(self, d, batch):
        kernels.band_logdet(self.L)


class BandTraceGradMemory(Benchmark):
    """Peak memory of the trace's gradient where its scratch is largest: d = 4096 (a 64 x 64 lattice,
    band width w = 64 or 65), O(n w) float64 per lane of a lock-step block of 8 factors."""

    params = [[100, 2000], ["chain", "grid", "extgrid"]]
    param_names = ["batch", "stencil"]

    def setup(self, batch, stencil):
        self.L, self.offsets, _, g = band_arrays(4096, batch, stencil)
        self.g = g[:, 0]
        kernels.band_trace_inv_grad(self.L, self.offsets, self.g)

    def peakmem_trace_inv_grad(self, batch, stencil):
        kernels.band_trace_inv_grad(self.L, self.offsets, self.g)


# The differentiable ops as the model uses them, each reduced to a scalar by a sum (upstream gradient
# ones); the right-hand side is differentiated too where there is one.
OPS = {
    "band_solve_t": lambda L, o, b: ops.sum(ops.band_solve_t(L, o, b)),
    "band_solve": lambda L, o, b: ops.sum(ops.band_solve(L, o, b)),
    "band_matvec_t": lambda L, o, b: ops.sum(ops.band_matvec_t(L, o, b)),
    "band_matvec": lambda L, o, b: ops.sum(ops.band_matvec(L, o, b)),
    "band_logdet": lambda L, o, b: ops.sum(ops.band_logdet(L)),
    "band_trace_inv": lambda L, o, b: ops.sum(ops.band_trace_inv(L, o)),
    "band_diag_inv": lambda L, o, b: ops.sum(ops.band_diag_inv(L, o)),
}
# The ops with a right-hand side are differentiated wrt (L, b), the others wrt L alone.
WITH_RHS = {"band_solve_t", "band_solve", "band_matvec_t", "band_matvec"}


class BandOpValueAndGrad(Benchmark):
    """Forward and VJP of one op through :func:`gvae.autodiff.value_and_grad` (tape included), float32."""

    params = [list(OPS), DIMS, BATCHES, ["chain", "extgrid"]]
    param_names = ["op", "d", "batch", "stencil"]

    def setup(self, op, d, batch, stencil):
        L, offsets, b, _ = band_arrays(d, batch, stencil)
        self.L, self.b = L, b
        self.step = value_and_grad(lambda L, b: OPS[op](L, offsets, b), argnums=(0, 1) if op in WITH_RHS else 0)
        self.step(L, b)

    def time_value_and_grad(self, op, d, batch, stencil):
        self.step(self.L, self.b)
