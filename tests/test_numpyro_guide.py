"""gvae.numpyro.AutoBandedNormal against dense float64 references: its posterior's log-density, entropy,
variances and samples against a dense MultivariateNormal of the same precision; on a linear-Gaussian
state-space model the exact posterior (Kalman smoother) is a point of the guide's family where its ELBO is
the log evidence, so the optimum; SVI under jit; importing gvae imports neither NumPyro nor Pyro
(tests/test_guide_arguments.py: the arguments refused)."""
import os
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gvae.numpyro needs JAX (pip install gvae[numpyro])")
numpyro = pytest.importorskip("numpyro", reason="gvae.numpyro needs NumPyro (pip install gvae[numpyro])")
import jax.numpy as jnp  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from jax.example_libraries.optimizers import exponential_decay  # noqa: E402
from numpyro.infer import SVI, Trace_ELBO  # noqa: E402

from gvae.numpyro import AutoBandedNormal  # noqa: E402

from .guide_reference import (CASES, ONE_SD, R, assert_smoother, dense_precision, dense_sample, kalman,  # noqa: E402
                              ssm_posterior_band, ssm_prior_precision)

pytestmark = pytest.mark.usefixtures("jax_x64")


def two_sites(rows, cols):
    """A model with a 2-vector 'a' then a rows x cols field 'x' (standard normals, no data)."""
    def model():
        numpyro.sample("a", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("x", dist.Normal(0.0, 1.0).expand([rows, cols]).to_event(2))
    return model


def _params(guide, rng):
    """Random parameters of an initialised guide: loc, a positive diagonal and every off-diagonal slot
    (those the stencil leaves out included, which must be ignored)."""
    with numpyro.handlers.seed(rng_seed=0):
        guide()
    D = guide.latent_dim
    K = len(guide._layout.offsets)
    return {"auto_loc": jnp.asarray(rng.normal(size=D)), "auto_factor_diag": jnp.asarray(rng.uniform(0.5, 2.0, D)),
            "auto_factor_off": jnp.asarray(rng.normal(size=(K - 1, D)))}


@pytest.mark.parametrize("case", list(CASES))
def test_posterior_against_dense_multivariate_normal(case):
    kwargs, order, links = CASES[case]
    guide = AutoBandedNormal(two_sites(3, 4), **kwargs)
    params = _params(guide, np.random.default_rng(1))
    q = guide.get_posterior(params)
    raw = np.concatenate([np.asarray(params["auto_factor_diag"])[None], np.asarray(params["auto_factor_off"])])
    offsets = guide._layout.offsets
    loc = np.asarray(params["auto_loc"])
    P = dense_precision(raw, offsets, links, np.asarray(order))
    ref = dist.MultivariateNormal(jnp.asarray(loc), precision_matrix=jnp.asarray(P))
    x = jnp.asarray(np.random.default_rng(2).normal(size=(5, 14)))
    np.testing.assert_allclose(q.log_prob(x), ref.log_prob(x), rtol=1e-10)
    np.testing.assert_allclose(q.entropy(), ref.entropy(), rtol=1e-10)
    np.testing.assert_allclose(q.variance, np.diag(np.linalg.inv(P)), rtol=1e-10)
    np.testing.assert_allclose(q.precision_matrix, P, rtol=1e-10, atol=1e-12)
    # A sample is loc + L^-T eps over y = x[order], eps the standard normals drawn with the key.
    key = jax.random.PRNGKey(3)
    eps = np.asarray(jax.random.normal(key, (4, 14), jnp.float64))
    np.testing.assert_allclose(q.sample(key, (4,)), dense_sample(raw, offsets, links, order, loc, eps), rtol=1e-10)


def ssm(T):
    """The linear-Gaussian state-space model of tests/guide_reference.py over T steps."""
    prior = jnp.asarray(ssm_prior_precision(T))

    def model(y):
        x = numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(T), precision_matrix=prior))
        numpyro.sample("y", dist.Normal(x, R ** 0.5).to_event(1), obs=y)
    return model


def test_exact_posterior_of_a_linear_gaussian_state_space_model():
    """At the exact posterior the ELBO equals log p(y) (every particle's: KL = 0), which no other point of
    the family reaches: the guide's optimum, whose means and marginal variances are the smoother's."""
    T = 40
    y = np.random.default_rng(4).normal(size=T)
    mean, factor = ssm_posterior_band(y)
    model = ssm(T)
    guide = AutoBandedNormal(model, stencil="chain")
    params = {"auto_loc": jnp.asarray(mean), "auto_factor_diag": jnp.asarray(factor[0]),
              "auto_factor_off": jnp.asarray(factor[1:])}
    with numpyro.handlers.seed(rng_seed=0):
        guide(jnp.asarray(y))
    elbo = -Trace_ELBO(num_particles=3).loss(jax.random.PRNGKey(5), params, model, guide, jnp.asarray(y))
    assert_smoother(y, elbo, guide.median(params)["x"], guide.get_posterior(params).variance,
                    guide.quantiles(params, ONE_SD)["x"])


@pytest.mark.slow
def test_svi_under_jit_approaches_the_log_evidence():
    T = 10
    y = jnp.asarray(np.random.default_rng(6).normal(size=T))
    model = ssm(T)
    guide = AutoBandedNormal(model)
    # The step size decays 100-fold over the run: the end is then close to the optimum, not noisy around it.
    svi = SVI(model, guide, numpyro.optim.Adam(exponential_decay(0.05, 1500, 0.01)), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(7), 1500, y, progress_bar=False)  # jitted steps
    elbo = -Trace_ELBO(num_particles=4000).loss(jax.random.PRNGKey(8), result.params, model, guide, y)
    logz = kalman(np.asarray(y))[2]
    assert logz - 0.05 < elbo < logz + 0.01
    draws = guide.sample_posterior(jax.random.PRNGKey(9), result.params, sample_shape=(3,))
    assert draws["x"].shape == (3, T)


@pytest.mark.slow
def test_gvae_imports_neither_library_and_numpyros_guide_not_pyro():
    code = ("import sys, gvae, gvae.cli, gvae.jax\n"
            "assert not {'numpyro', 'pyro'} & set(sys.modules), 'imported'\n"
            "import gvae.numpyro\n"
            "assert not {'pyro', 'torch'} & set(sys.modules), 'imported'\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
