"""VCCA with linear Gaussian decoders is probabilistic CCA (Bach and Jordan 2005): at PCCA's closed-form
maximum-likelihood solution, with q(z|x1, x2) the exact posterior, gvae's bound is the closed-form
log-likelihood for every draw and a stationary point of its gradient; maximising the bound from a random
start finds that solution and the data's canonical correlations; and the paper's q(z|x1) is a looser
bound there, by E KL(q(z|x1) || p(z|x1, x2))."""
import math

import numpy as np
import pytest
import scipy.optimize
import scipy.special
from hypothesis import given, settings, strategies as st

from gvae.autodiff import value_and_grad
from gvae.models.vcca.model import VCCA, vcca_loss
from tests.pcca_reference import log_likelihood, model_correlations, pcca_ml

FLOOR = 1e-4  # the floor on the factors' diagonals, the posterior's and the noises' (their defaults)


def _raw_band(L, floor=FLOOR):
    """The unconstrained band storage (n, n) whose factor (softplus + floor on the diagonal) is dense L."""
    n = len(L)
    raw = np.zeros((n, n))
    raw[0] = np.log(np.expm1(np.diag(L) - floor))
    for k in range(1, n):
        raw[k, k:] = np.diag(L, -k)
    return raw


def _pcca_data(seed, n1, n2, d, pairs):
    """Pairs drawn from a PCCA model with random loadings and full noise covariances."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((pairs, d))
    views = []
    for n in (n1, n2):
        A = rng.standard_normal((n, n)) * 0.4
        noise = rng.standard_normal((pairs, n)) @ (A + 0.3 * np.eye(n)).T
        views.append(z @ rng.standard_normal((d, n)) + noise + rng.standard_normal(n))
    return views


def _model(n1, n2, d, shared_from="both"):
    return VCCA(n1, n2, d, (), "elu", "full", dtype=np.float64, likelihood="gaussian", shared_from=shared_from)


def _set_to(params, ml, d):
    """The model's parameters at PCCA's solution ``ml``, q(z|x1, x2) the exact posterior N(m, Lambda^-1),
    Lambda = I + W^T Psi^-1 W, m = Lambda^-1 W^T Psi^-1 (x - mu)."""
    W = np.vstack([ml["W1"], ml["W2"]])
    Psi_inv = np.linalg.inv(np.block([[ml["Psi1"], np.zeros((len(ml["W1"]), len(ml["W2"])))],
                                      [np.zeros((len(ml["W2"]), len(ml["W1"]))), ml["Psi2"]]]))
    Lam = np.eye(d) + W.T @ Psi_inv @ W
    gain = Psi_inv @ W @ np.linalg.inv(Lam)  # x @ gain = m^T
    params["enc.W0"][...] = 0
    params["enc.W0"][:, :d] = gain
    params["enc.b0"][:d] = -np.concatenate([ml["mu1"], ml["mu2"]]) @ gain
    params["enc.b0"][d:] = _raw_band(np.linalg.cholesky(Lam)).ravel()
    for k in (1, 2):
        params[f"dec{k}.W0"][...] = ml[f"W{k}"].T
        params[f"dec{k}.b0"][...] = ml[f"mu{k}"]
        params[f"noise{k}.L"][...] = _raw_band(np.linalg.cholesky(np.linalg.inv(ml[f"Psi{k}"])))


def _generative(params):
    """(W1, W2, Psi1, Psi2, mu1, mu2) of the model's parameters, float64 host."""
    out = {}
    for k in (1, 2):
        raw = np.asarray(params[f"noise{k}.L"], dtype=np.float64)
        n = len(raw)
        L = np.diag(np.logaddexp(0, raw[0]) + FLOOR)
        for j in range(1, n):
            L += np.diag(raw[j, j:], -j)
        out[f"W{k}"] = np.asarray(params[f"dec{k}.W0"]).T
        out[f"Psi{k}"] = np.linalg.inv(L @ L.T)
        out[f"mu{k}"] = np.asarray(params[f"dec{k}.b0"])
    return out


def test_the_closed_form_is_the_likelihood_of_its_own_solution():
    """The reference agrees with itself: the closed-form maximum is the dense log-likelihood of the
    solution's covariance, whose canonical correlations are the data's first d and zero beyond, and
    moving the solution lowers the likelihood."""
    x1, x2 = _pcca_data(0, 4, 3, 2, 400)
    ml = pcca_ml(x1, x2, 2)
    keys = ("W1", "W2", "Psi1", "Psi2", "mu1", "mu2")
    assert log_likelihood(x1, x2, *(ml[k] for k in keys)).mean() == pytest.approx(ml["loglik"], rel=1e-12)
    np.testing.assert_allclose(model_correlations(*(ml[k] for k in keys[:4])), [*ml["rho"][:2], 0], atol=1e-7)
    moved = dict(ml, W1=ml["W1"] * 1.01)
    assert log_likelihood(x1, x2, *(moved[k] for k in keys)).mean() < ml["loglik"] - 1e-6


def _sigma_points(d, pairs):
    """Noise (2d, pairs, d) of the points +-sqrt(d) e_i: their z = mu + L^-T eps have q's mean and
    covariance, so the mean over them of anything quadratic in z (the linear-Gaussian decoders'
    log-densities) is its expectation under q, exactly, at every parameter value."""
    eps = np.zeros((2 * d, pairs, d))
    for i in range(d):
        eps[2 * i, :, i], eps[2 * i + 1, :, i] = math.sqrt(d), -math.sqrt(d)
    return eps


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 16), n1=st.integers(1, 4), n2=st.integers(1, 4), data=st.data())
def test_at_pccas_solution_the_bound_is_the_closed_form_likelihood_and_stationary(seed, n1, n2, data):
    """With q the exact posterior, log p(x1|z) + log p(x2|z) + log p(z) - log q(z|x1, x2) = log p(x1, x2)
    whatever z is drawn: the bound's Monte Carlo terms per pair are the dense log-likelihood, and their
    mean PCCA's closed-form maximum. The expected bound (closed-form KL, the decoders' term exact at the
    sigma points) is that maximum too, and its gradient in every parameter is zero there."""
    d = data.draw(st.integers(1, min(n1, n2)))
    x1, x2 = _pcca_data(seed, n1, n2, d, 60)
    ml = pcca_ml(x1, x2, d)
    model = _model(n1, n2, d)
    params = model.new_params(np.random.default_rng(seed)).views
    _set_to(params, ml, d)
    eps = np.random.default_rng(seed + 1).standard_normal((3, len(x1), model.noise_size)) * 2
    rec, rate = model.terms(params, x1, x2, eps, kl="mc")
    exact = log_likelihood(x1, x2, *(ml[k] for k in ("W1", "W2", "Psi1", "Psi2", "mu1", "mu2")))
    np.testing.assert_allclose(rec - rate, exact, rtol=1e-9, atol=1e-9)
    assert np.mean(rec - rate) == pytest.approx(ml["loglik"], rel=1e-9)
    loss, grads = value_and_grad(lambda p: vcca_loss(p, model, x1, x2, _sigma_points(d, len(x1)))[0])(params)
    assert -loss == pytest.approx(ml["loglik"], rel=1e-9)
    for name, g in grads.items():
        np.testing.assert_allclose(g, 0, atol=1e-7 * (1 + np.abs(params[name]).max()), err_msg=name)


def _exact_and_view_one(pairs):
    """PCCA's solution (d = 1) on ``pairs`` pairs of data: (x1, x2, ml, the model of both views with q the
    exact posterior and its parameters, the paper's model of q(z|x1) and its parameters, and per pair
    E KL(q(z|x1) || p(z|x1, x2))). That q(z|x1) is the best Gaussian linear in x1 with the exact posterior's
    precision: its mean regressed on x1 by least squares, so the KL is its means' part alone."""
    d = 1
    x1, x2 = _pcca_data(3, 3, 2, d, pairs)
    ml = pcca_ml(x1, x2, d)
    both = _model(3, 2, d)
    pb = both.new_params(np.random.default_rng(0)).views
    _set_to(pb, ml, d)
    m = both.shared(pb, x1, None, x2)[1]  # the exact posterior's mean per pair
    one = _model(3, 2, d, shared_from="view1")
    po = one.new_params(np.random.default_rng(0)).views
    for name in po:
        if not name.startswith("enc."):
            po[name][...] = pb[name]
    X = np.hstack([x1, np.ones((len(x1), 1))])
    coef = np.linalg.lstsq(X, m, rcond=None)[0]
    po["enc.W0"][...] = 0
    po["enc.W0"][:, :d] = coef[:-1]
    po["enc.b0"][...] = pb["enc.b0"]
    po["enc.b0"][:d] = coef[-1]
    lam = (np.logaddexp(0, pb["enc.b0"][d]) + FLOOR) ** 2  # the exact posterior precision (d = 1)
    gap = 0.5 * lam * ((m - x1 @ coef[:-1] - coef[-1]) ** 2)[:, 0]  # KL of equal variances: the means' part
    return x1, x2, ml, (both, pb), (one, po), gap


def test_the_papers_q_of_view_one_alone_is_a_looser_bound_at_the_same_model():
    """With q(z|x1) the bound is log p(x1, x2) - E KL(q(z|x1) || p(z|x1, x2)): at PCCA's solution, the best
    Gaussian q(z|x1) linear in x1 falls short of the closed-form maximum by that KL, in closed form."""
    x1, x2, ml, _, (one, po), gap = _exact_and_view_one(2000)
    eps = np.random.default_rng(1).standard_normal((400, len(x1), 1))
    rec, rate = one.terms(po, x1, x2, eps, kl="mc")
    assert gap.mean() > 0.05
    assert np.mean(rec - rate) == pytest.approx(ml["loglik"] - gap.mean(), abs=0.01)


def test_the_log_weights_are_the_likelihood_at_the_exact_posterior_and_close_on_it_with_view_one_alone():
    """VCCA.log_weights, gvae eval's importance weights: with q the exact posterior every draw's weight is the
    closed-form log p(x1, x2) of its pair; with the paper's q(z|x1) one draw falls short by E KL(q ||
    p(z|x1, x2)) and the log-mean-exp of K draws closes on log p(x1, x2) as K grows."""
    x1, x2, ml, (both, pb), (one, po), gap = _exact_and_view_one(300)
    exact = log_likelihood(x1, x2, *(ml[k] for k in ("W1", "W2", "Psi1", "Psi2", "mu1", "mu2")))
    eps = np.random.default_rng(2).standard_normal((4, len(x1), 1)) * 2
    np.testing.assert_allclose(both.log_weights(pb, x1, x2, eps), np.broadcast_to(exact, (4, len(x1))), rtol=1e-9)
    weights = one.log_weights(po, x1, x2, np.random.default_rng(3).standard_normal((4000, len(x1), 1)))
    # L_k of every pair averaged over the 4000 / k disjoint groups of k draws, then over the pairs
    bounds = [(scipy.special.logsumexp(weights.reshape(-1, k, len(x1)), axis=1) - math.log(k)).mean()
              for k in (1, 40, 4000)]
    assert gap.mean() > 0.05 and bounds[0] == pytest.approx(exact.mean() - gap.mean(), abs=2e-3)
    assert bounds[0] < bounds[1] < bounds[2]
    assert abs(bounds[2] - exact.mean()) < 0.1 * gap.mean()  # L_4000's noise: a few thousandths of a nat here


def test_maximising_the_expected_bound_from_a_random_start_finds_pccas_solution():
    """gvae's expected bound (exact at the sigma points) and its gradient, maximised by L-BFGS from the
    model's own random initialisation: the fitted model's exact log-likelihood is the closed-form
    maximum (which no parameters exceed) and its canonical correlations are the data's first two (the
    third zero); the bound at the end is that likelihood, the fitted q the exact posterior."""
    n1, n2, d = 4, 3, 2
    x1, x2 = _pcca_data(5, n1, n2, d, 200)
    ml = pcca_ml(x1, x2, d)
    model = _model(n1, n2, d)
    flat = model.new_params(np.random.default_rng(0))
    loss_and_grad = value_and_grad(lambda p: vcca_loss(p, model, x1, x2, _sigma_points(d, len(x1)))[0])

    def objective(x):
        flat.flat[:] = x
        loss, grads = loss_and_grad(flat.views)
        return float(loss), np.concatenate([grads[name].ravel() for name in flat.slices])

    result = scipy.optimize.minimize(objective, flat.flat.copy(), jac=True, method="L-BFGS-B",
                                     options={"maxiter": 5000, "gtol": 1e-9, "ftol": 1e-13})
    flat.flat[:] = result.x
    fit = _generative(flat.views)
    got = log_likelihood(x1, x2, *(fit[k] for k in ("W1", "W2", "Psi1", "Psi2", "mu1", "mu2"))).mean()
    assert got <= ml["loglik"] + 1e-9
    assert got == pytest.approx(ml["loglik"], abs=1e-7)
    assert -result.fun <= got + 1e-9 and -result.fun == pytest.approx(got, abs=1e-7)
    np.testing.assert_allclose(model_correlations(fit["W1"], fit["W2"], fit["Psi1"], fit["Psi2"]),
                               [*ml["rho"][:d], 0], atol=1e-5)


def test_the_gaussian_views_and_both_views_refuse_what_they_cannot_do():
    with pytest.raises(ValueError, match=r"a VCCA view likelihood is one of \['bernoulli', 'gaussian', 'diagonal-gaussian', "
                                         r"'pixel-gaussian'\], for both views or a pair, got 'poisson'"):
        VCCA(3, 2, 1, (), likelihood="poisson")
    with pytest.raises(ValueError, match=r"infers the shared code from \['view1', 'both'\], got 'view2'"):
        VCCA(3, 2, 1, (), shared_from="view2")
    model = _model(3, 2, 1)
    params = model.new_params(np.random.default_rng(0)).views
    with pytest.raises(ValueError, match="from both views .* give x2"):
        model.shared(params, np.zeros((4, 3)))
    assert math.isfinite(float(model.terms(params, np.zeros((4, 3)), np.zeros((4, 2)), np.zeros((1, 4, 1)))[0][0]))
