"""gvae.jax.BandedPrecisionNormal against a dense reference (log_prob, entropy, KLs, moments), as a pytree
through jit, vmap and grad, its constructors, its clear errors, and the README's "From JAX" block."""
import re
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gvae.jax needs JAX (pip install gvae[jax])")
pytestmark = pytest.mark.usefixtures("jax_x64")

import jax.numpy as jnp  # noqa: E402
from scipy import stats  # noqa: E402

from gvae.jax import BandedPrecisionNormal  # noqa: E402
from gvae.model.lattice import lattice_mask  # noqa: E402
from tests.band_reference import dense_from_band, random_factor  # noqa: E402

ROWS, COLS = 2, 3
N = ROWS * COLS
STENCILS = {"chain": (0, 1), "grid": (0, 1, 3), "extgrid": (0, 1, 2, 3, 4)}


def make(stencil, batch=(2,), seed=0):
    """A distribution through the named constructor, with its dense precision and covariance (NumPy)."""
    rng = np.random.default_rng(seed)
    loc = jnp.asarray(rng.normal(size=batch + (N,)))
    raw = jnp.asarray(random_factor(rng, batch, STENCILS[stencil], N))
    q = (BandedPrecisionNormal.chain(loc, raw) if stencil == "chain"
         else getattr(BandedPrecisionNormal, stencil)(loc, raw, ROWS, COLS))
    D = dense_from_band(np.asarray(q.factor), q.offsets)
    P = D @ np.swapaxes(D, -1, -2)
    return q, P, np.linalg.inv(P)


@pytest.mark.slow
@pytest.mark.parametrize("stencil", STENCILS)
def test_against_dense_reference(stencil):
    q, P, S = make(stencil)
    mu = np.asarray(q.loc)
    x = np.random.default_rng(5).normal(size=(3, 2, N))
    want = np.stack([[stats.multivariate_normal(mu[j], S[j]).logpdf(x[i, j]) for j in range(2)] for i in range(3)])
    np.testing.assert_allclose(q.log_prob(jnp.asarray(x)), want, rtol=1e-10)
    np.testing.assert_allclose(q.entropy(), [stats.multivariate_normal(mu[j], S[j]).entropy() for j in range(2)],
                               rtol=1e-10)
    np.testing.assert_allclose(q.variance, np.diagonal(S, axis1=-2, axis2=-1), rtol=1e-10)
    np.testing.assert_allclose(q.precision_matrix, P, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(q.covariance_matrix, S, rtol=1e-10, atol=1e-14)
    logdet_S = np.linalg.slogdet(S)[1]
    kl0 = 0.5 * (np.trace(S, axis1=-2, axis2=-1) + (mu ** 2).sum(-1) - N - logdet_S)
    np.testing.assert_allclose(q.kl_to_standard_normal(), kl0, rtol=1e-10)
    m, s = np.linspace(-1, 1, N), np.linspace(0.5, 2, N)
    kl = 0.5 * ((np.diagonal(S, axis1=-2, axis2=-1) / s ** 2).sum(-1) + (((mu - m) / s) ** 2).sum(-1) - N
                + 2 * np.log(s).sum() - logdet_S)
    np.testing.assert_allclose(q.kl_to_diagonal(m, s), kl, rtol=1e-10)
    # one scale per distribution (last axis of size 1): the band_trace_inv path, same value as n equal scales
    np.testing.assert_allclose(q.kl_to_diagonal(m, jnp.full((2, 1), 1.5)), q.kl_to_diagonal(m, jnp.full(N, 1.5)),
                               rtol=1e-12)


def test_lattice_constructors_zero_the_wrap_around():
    for stencil in ("grid", "extgrid"):
        q, _, _ = make(stencil)
        mask = lattice_mask(q.offsets, ROWS, COLS) > 0
        assert q.offsets == STENCILS[stencil]
        assert np.all(np.asarray(q.factor)[:, ~mask] == 0) and np.all(np.isfinite(np.asarray(q.factor)))


def test_sample_moments():
    q, _, S = make("extgrid", batch=())
    z = np.asarray(q.rsample(jax.random.key(0), (4000,)))
    assert z.shape == (4000, N)
    se = np.sqrt(np.diagonal(S) / 4000)
    assert np.all(np.abs(z.mean(0) - np.asarray(q.loc)) < 5 * se)
    # the sample covariance's entries have standard error about sqrt((S_ii S_jj + S_ij^2) / 4000)
    se_cov = np.sqrt((np.outer(np.diagonal(S), np.diagonal(S)) + S ** 2) / 4000)
    assert np.all(np.abs(np.cov(z.T) - S) < 5 * se_cov)


@pytest.mark.slow
def test_pytree_through_jit_vmap_grad():
    """A distribution is an argument and a gradient of jit, vmap and grad; the gradient of an objective
    using every method matches that of the same objective written densely in jnp."""
    q, _, _ = make("grid")
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, N)))
    np.testing.assert_array_equal(jax.jit(lambda q, x: q.log_prob(x))(q, x), q.log_prob(x))
    np.testing.assert_allclose(jax.vmap(lambda q, x: q.log_prob(x))(q, x), q.log_prob(x), rtol=1e-12)
    key = jax.random.key(1)
    eps = jax.random.normal(key, q.loc.shape, q.loc.dtype)

    def ours(q):
        return (q.log_prob(x) + q.kl_to_standard_normal() + q.entropy()).sum() + jnp.sin(q.rsample(key)).sum()

    def dense(q):
        D = q._dense_factor()
        S = jnp.linalg.inv(D @ jnp.swapaxes(D, -1, -2))
        logdet = jnp.log(jnp.diagonal(D, axis1=-2, axis2=-1)).sum(-1)
        lp = jax.scipy.stats.multivariate_normal.logpdf(x, q.loc, S)
        kl = 0.5 * (jnp.trace(S, axis1=-2, axis2=-1) + jnp.square(q.loc).sum(-1) - N) + logdet
        z = q.loc + jnp.linalg.solve(jnp.swapaxes(D, -1, -2), eps[..., None])[..., 0]
        return (lp + kl + 0.5 * N * (1 + np.log(2 * np.pi)) - logdet).sum() + jnp.sin(z).sum()

    got, want = jax.jit(jax.grad(ours))(q), jax.jit(jax.grad(dense))(q)
    assert isinstance(got, BandedPrecisionNormal) and got.offsets == q.offsets
    np.testing.assert_allclose(got.loc, want.loc, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.factor, want.factor, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Clear errors
# --------------------------------------------------------------------------------------------------

def test_wrong_dtype_is_a_type_error():
    with pytest.raises(TypeError, match="BandedPrecisionNormal: loc has dtype int"):
        BandedPrecisionNormal(jnp.zeros(N, jnp.int32), jnp.ones((2, N)), (0, 1))


def test_mixed_dtypes_are_a_type_error():
    with pytest.raises(TypeError, match="arguments must share one dtype, got loc float32, factor float64"):
        BandedPrecisionNormal(jnp.zeros(N, jnp.float32), jnp.ones((2, N)), (0, 1))


def test_wrong_shapes_are_a_value_error():
    with pytest.raises(ValueError, match="loc must have shape"):
        BandedPrecisionNormal(jnp.zeros(N + 1), jnp.ones((2, N)), (0, 1))
    with pytest.raises(ValueError, match="does not broadcast"):
        BandedPrecisionNormal(jnp.zeros((2, N)), jnp.ones((3, 2, N)), (0, 1))
    with pytest.raises(ValueError, match=r"factor must have shape \(\*batch, 3, 6\)"):
        BandedPrecisionNormal.grid(jnp.zeros(N), jnp.ones((2, N)), ROWS, COLS)
    with pytest.raises(ValueError, match="BandedPrecisionNormal"):
        BandedPrecisionNormal(jnp.zeros(N), jnp.ones((2, N)), (0, 7))


def test_non_positive_diagonal_eagerly_and_under_jit():
    """Eagerly a ValueError naming the factor; under jit the kernel's ValueError, wrapped in a
    JaxRuntimeError when the compiled function runs."""
    factor = jnp.ones((2, N)).at[0, 3].set(0.0)
    with pytest.raises(ValueError, match="factor's main diagonal"):
        BandedPrecisionNormal.chain(jnp.zeros(N), factor)
    with pytest.raises(jax.errors.JaxRuntimeError, match="ValueError: band_"):
        jax.jit(lambda f: BandedPrecisionNormal.chain(jnp.zeros(N), f).entropy())(factor).block_until_ready()


@pytest.mark.slow
def test_dense_views_beyond_free_memory_are_refused_eagerly_and_under_jit(monkeypatch):
    """covariance_matrix at n = 60,000 once ran into the out-of-memory killer: a dense view that cannot
    fit in the free memory is a ValueError naming its size, before anything is allocated, under jit too
    (shapes are static). Shown with n = 1500 (18 MB a matrix) against 100 MB free: JAX materialises the
    broadcast over loc's batch of 2, and its computation holds 4 (precision) or 6 (covariance) more."""
    from gvae.kernels.band import dense
    n = 1500
    q = BandedPrecisionNormal.chain(jnp.zeros((2, n)), jnp.ones((2, n)))
    monkeypatch.setattr(dense, "free_memory", lambda: 100_000_000)
    for view, needed in (("covariance_matrix", "144"), ("precision_matrix", "108")):
        message = (rf"^BandedPrecisionNormal\.{view}: the dense \(2, 1500, 1500\) float64 matrix needs 36 MB "
                   rf"\({needed} MB with the temporaries its computation makes\), more than the 100 MB this machine "
                   r"has free; use the banded operations")
        with pytest.raises(ValueError, match=message):
            getattr(q, view)
        with pytest.raises(ValueError, match=message):
            jax.jit(lambda d: getattr(d, view))(q)
    monkeypatch.setattr(dense, "free_memory", lambda: 120_000_000)
    P = q.precision_matrix
    assert P.shape == (2, n, n) and float(P[1, 1, 0]) == 1.0


def test_kl_to_diagonal_refuses_a_non_positive_scale_and_gives_nan_under_jit_as_torch():
    """scale 0 once gave NaN silently: a concrete scale <= 0 or NaN is a ValueError (gvae.torch's validated
    Normal refuses it too); a traced one cannot be read, and gives NaN, as gvae.torch without validation."""
    q, _, _ = make("chain")
    for scale, bad in ((0.0, "1 of its 1"), (jnp.array([1.0, 0.0, 2.0, -1.0, 1.0, 1.0]), "2 of its 6"),
                       (jnp.full((2, 1), jnp.nan), "2 of its 2")):
        with pytest.raises(ValueError, match=rf"^BandedPrecisionNormal\.kl_to_diagonal: scale must be > 0 .*{bad} "
                                             "entries are not"):
            q.kl_to_diagonal(0.0, scale)
    got = jax.jit(lambda s: q.kl_to_diagonal(0.0, s))(0.0)
    assert got.shape == (2,) and bool(jnp.isnan(got).all())
    assert bool(jnp.isfinite(jax.jit(lambda s: q.kl_to_diagonal(0.0, s))(1.5)).all())
    # A concrete scale closed over under jit is read on the host (compared there, it would be a tracer).
    scale = jnp.full(N, 1.5, jnp.float32)
    kl = jax.jit(lambda F: BandedPrecisionNormal.chain(jnp.zeros(N, jnp.float32), F).kl_to_diagonal(0.0, scale))
    assert bool(jnp.isfinite(kl(jnp.ones((2, N), jnp.float32))).all())


# --------------------------------------------------------------------------------------------------
# The README
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_readme_block_runs():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"<!-- the block below runs in tests/test_jax_distribution.py -->\n```python\n(.*?)```",
                     text, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["z"].shape == (8, 16) and np.isfinite(namespace["loss"])
    assert np.all(np.isfinite(namespace["grads"][1]))
