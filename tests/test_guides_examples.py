"""examples/stochastic_volatility_guides.py and examples/poisson_field_guides.py: their models' densities
against dense Gaussians (the AR(1) path's prior, the GMRF's), and each example's run with both libraries at
a tiny size (a few SVI steps of a few guides)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

pytest.importorskip("numpyro", reason="the examples need NumPyro (pip install gvae[numpyro])")
pytest.importorskip("pyro", reason="the examples need Pyro (pip install gvae[pyro])")
import torch  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name):
    """examples/NAME.py as a module, examples/ on the path for its guide_fitting."""
    if str(EXAMPLES) not in sys.path:
        sys.path.append(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ar1_path_density_is_the_dense_gaussian_of_its_precision():
    sv = example("stochastic_volatility_guides")
    T, mu, phi, sigma = 6, -0.5, 0.8, 0.3
    P = np.zeros((T, T))  # the AR(1) prior's precision, stationary start
    for t in range(T - 1):
        P[t, t] += phi ** 2
        P[t + 1, t] = P[t, t + 1] = -phi
    P += np.eye(T)
    P[0, 0] -= phi ** 2
    P /= sigma ** 2
    h = np.random.default_rng(0).normal(size=(3, T))
    expected = multivariate_normal(np.full(T, mu), np.linalg.inv(P)).logpdf(h)
    mu, phi, sigma = (torch.full((3,), v, dtype=torch.float64) for v in (mu, phi, sigma))
    got = sv.ar1_log_density(torch, torch.as_tensor(h), mu, phi, sigma)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_the_field_density_is_the_dense_gaussian_of_its_banded_precision():
    pf = example("poisson_field_guides")
    rows, cols = 3, 4
    ab = pf.precision_band(rows, cols)
    Q = np.diag(ab[0])
    for k in range(1, cols + 1):
        Q += np.diag(ab[k, :-k], -k) + np.diag(ab[k, :-k], k)
    for i in range(rows * cols):  # Q built afresh from the lattice: tau (degree I - adjacency) + kappa I
        r, c = divmod(i, cols)
        neighbours = [(r + dr) * cols + c + dc for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0))
                      if 0 <= r + dr < rows and 0 <= c + dc < cols]
        expected_row = np.zeros(rows * cols)
        expected_row[neighbours] = -pf.TAU
        expected_row[i] = pf.TAU * len(neighbours) + pf.KAPPA
        np.testing.assert_allclose(Q[i], expected_row)
    f = np.random.default_rng(1).normal(size=(2, rows, cols))
    expected = multivariate_normal(np.zeros(rows * cols), np.linalg.inv(Q)).logpdf(f.reshape(2, -1))
    np.testing.assert_allclose(pf.gmrf_log_density(f, pf.log_det_precision(rows, cols)), expected, rtol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("library", ["numpyro", "pyro"])
def test_the_examples_run(library, capsys):
    example("stochastic_volatility_guides").main(["--library", library, "--T", "20", "--steps", "3",
                                                  "--guides", "banded"])
    example("poisson_field_guides").main(["--library", library, "--size", "4", "--steps", "3", "--stencil", "extgrid",
                                          "--guides", "banded"])
    out = capsys.readouterr().out
    assert out.count("ms/step") == 2 and "nan" not in out


def test_pyro_final_elbo_in_chunks_is_the_closed_form_mean(monkeypatch):
    """fit_pyro's final ELBO drawn in chunks of particles (7 here, the remainder 5) is the mean over all of
    them: on z ~ N(0, 1), x | z ~ N(z, 1), x = 1 and the guide N(0.3, 0.8^2), within 5 standard errors of
    the closed form."""
    import pyro
    import pyro.distributions as dist

    fitting = example("guide_fitting")
    monkeypatch.setattr(fitting, "PARTICLE_CHUNK", 7)
    m, s = 0.3, 0.8

    def model(x):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.tensor(m, dtype=torch.float64))
        pyro.sample("z", dist.Normal(loc, torch.tensor(s, dtype=torch.float64)))

    _, final, _ = fitting.fit_pyro(model, guide, np.float64(1.0), steps=1, lr=0.0,
                                   elbo_particles=250, elbo_repeats=4)
    log2pi = np.log(2 * np.pi)
    exact = (-log2pi - 0.5 * (m ** 2 + s ** 2) - 0.5 * ((1 - m) ** 2 + s ** 2)
             + 0.5 * (log2pi + 1) + np.log(s))
    # the per-draw ELBO's standard deviation here is below 1.2 (a quadratic in z of unit scale)
    assert abs(final - exact) < 5 * 1.2 / np.sqrt(1000)
