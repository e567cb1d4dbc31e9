"""gvae.pyro.AutoBandedNormal against dense float64 references: its posterior's log-density, entropy,
variances and samples against a dense MultivariateNormal of the same precision; on a linear-Gaussian
state-space model the exact posterior (Kalman smoother) is a point of the guide's family where its ELBO is
the log evidence, so the optimum; eager SVI (tests/test_guide_arguments.py: the arguments refused)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gvae.pyro needs PyTorch (pip install gvae[pyro])")
pyro = pytest.importorskip("pyro", reason="gvae.pyro needs Pyro (pip install gvae[pyro])")
import pyro.distributions as dist  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from pyro.nn import PyroParam  # noqa: E402
from torch import nn  # noqa: E402

from gvae.pyro import AutoBandedNormal  # noqa: E402

from .guide_reference import (CASES, ONE_SD, R, assert_smoother, dense_precision, dense_sample, kalman,  # noqa: E402
                              ssm_posterior_band, ssm_prior_precision)

F64 = torch.float64


@pytest.fixture(autouse=True)
def clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def two_sites(rows, cols):
    """A model with a 2-vector 'a' then a rows x cols field 'x' (standard normals in float64, no data)."""
    def model():
        zero, one = torch.zeros((), dtype=F64), torch.ones((), dtype=F64)
        pyro.sample("a", dist.Normal(zero, one).expand([2]).to_event(1))
        pyro.sample("x", dist.Normal(zero, one).expand([rows, cols]).to_event(2))
    return model


def _set(guide, loc, diag, off):
    """The guide's parameters set to float64 values (the diagonal through its softplus constraint)."""
    guide.loc = nn.Parameter(torch.as_tensor(loc, dtype=F64))
    guide.factor_diag = PyroParam(torch.as_tensor(diag, dtype=F64), dist.constraints.softplus_positive)
    guide.factor_off = nn.Parameter(torch.as_tensor(off, dtype=F64))


@pytest.mark.parametrize("case", list(CASES))
def test_posterior_against_dense_multivariate_normal(case):
    kwargs, order, links = CASES[case]
    guide = AutoBandedNormal(two_sites(3, 4), **kwargs)
    guide()
    rng = np.random.default_rng(1)
    offsets = guide._offsets
    loc, diag, off = rng.normal(size=14), rng.uniform(0.5, 2.0, 14), rng.normal(size=(len(offsets) - 1, 14))
    _set(guide, loc, diag, off)  # every off-diagonal slot set: those the stencil leaves out must be ignored
    with torch.no_grad():
        q = guide.get_posterior()
        raw = np.concatenate([diag[None], off])
        P = torch.as_tensor(dense_precision(raw, offsets, links, np.asarray(order)))
        ref = torch.distributions.MultivariateNormal(torch.as_tensor(loc), precision_matrix=P)
        x = torch.as_tensor(np.random.default_rng(2).normal(size=(5, 14)))
        torch.testing.assert_close(q.log_prob(x), ref.log_prob(x), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(q.entropy(), ref.entropy(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(q.variance, torch.diag(torch.linalg.inv(P)), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(q.precision_matrix, P, rtol=1e-10, atol=1e-12)
        # A sample is loc + L^-T eps over y = x[order], eps the generator's next standard normals.
        torch.manual_seed(3)
        eps = torch.randn(4, 14, dtype=F64).numpy()
        torch.manual_seed(3)
        np.testing.assert_allclose(q.rsample((4,)), dense_sample(raw, offsets, links, order, loc, eps), rtol=1e-10)


def ssm(T):
    """The linear-Gaussian state-space model of tests/guide_reference.py over T steps, in float64."""
    prior = torch.as_tensor(ssm_prior_precision(T))

    def model(y):
        x = pyro.sample("x", dist.MultivariateNormal(torch.zeros(T, dtype=F64), precision_matrix=prior))
        pyro.sample("y", dist.Normal(x, R ** 0.5).to_event(1), obs=y)
    return model


def test_exact_posterior_of_a_linear_gaussian_state_space_model():
    """As tests/test_numpyro_guide.py's: the ELBO at the exact posterior is log p(y), so that point is the
    optimum, and its moments are the Kalman smoother's."""
    T = 40
    y = np.random.default_rng(4).normal(size=T)
    mean, factor = ssm_posterior_band(y)
    model = ssm(T)
    guide = AutoBandedNormal(model, stencil="chain")
    yt = torch.as_tensor(y)
    guide(yt)
    _set(guide, mean, factor[0], factor[1:])
    elbo = -Trace_ELBO(num_particles=3).loss(model, guide, yt)
    with torch.no_grad():
        variance = guide.get_posterior().variance
    assert_smoother(y, elbo, guide.median(yt)["x"], variance, guide.quantiles(ONE_SD, yt)["x"])


@pytest.mark.slow
def test_eager_svi_approaches_the_log_evidence():
    pyro.set_rng_seed(5)
    T = 10
    y = torch.as_tensor(np.random.default_rng(6).normal(size=T))
    model = ssm(T)
    # init_scale near the posterior's: Pyro's softplus moves the factor's diagonal by about the step size a
    # step, and 1 / 0.1 is far from the posterior's.
    guide = AutoBandedNormal(model, init_scale=0.5)
    steps = 200
    # The step size decays 100-fold over the run: the end is then close to the optimum, not noisy around it.
    svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.01 ** (1 / steps)}),
              Trace_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(steps):
        svi.step(y)
    elbo = -Trace_ELBO(num_particles=4000, vectorize_particles=True).loss(model, guide, y)
    logz = kalman(y.numpy())[2]
    assert logz - 0.1 < elbo < logz + 0.01
    draws = pyro.infer.Predictive(model, guide=guide, num_samples=3)(y)
    assert draws["x"].shape == (3, T)
