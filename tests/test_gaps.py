"""The inference gaps on a model whose posterior is known: the linear-Gaussian factor-analysis decoder
p(x|z) = N(W z + b, Psi), Psi diagonal, prior N(0, I) (a VAE with no hidden layers and the Gaussian
likelihood). Its posterior is N(m, P^-1) with P = I + W^T Psi^-1 W, m = P^-1 W^T Psi^-1 (x - b), and
log p(x) = log N(x; b, W W^T + Psi).

For a family F (all q with a free mean and a covariance in F's set), the refined ELBO is log p(x) minus
min_{q in F} KL(q || posterior), and the minimum is reached at the posterior mean, so

    approximation gap of F = min over F's covariances of KL(N(0, S) || N(0, P^-1)),

computed here densely in float64, independently of gvae: in closed form for the diagonal family and by
scipy.optimize over the family's own parameters (a lower-triangular factor on the family's sparsity
pattern, built here from lattice coordinates; AR(1)'s two scalars; D and u of D + u u^T) for the others.

Nestings of the sets of precisions (a smaller set has a larger or equal gap):
diagonal ⊂ ar1?  no (ar1's covariance s T(rho) has one scale), but ar1 ⊂ chain (its factor is bidiagonal);
diagonal ⊂ chain ⊂ full; diagonal ⊂ grid ⊂ extgrid ⊂ full; diagonal ⊂ rank1 ⊂ full. The chain is NOT
inside the grid: the grid drops the link from the first unit of a row to the last unit of the row above,
which the chain keeps (test_the_chain_is_not_inside_the_grid).
"""
import importlib.util
import json
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.optimize import minimize

from gvae.cli import main
from gvae.model import VAE
from gvae.model.gaussian import positive, positive_inverse
from gvae.model.local import HEADS, LocalVAE, encoder_heads, with_heads
from gvae.model.objectives import elbo
from gvae.model.proposals import mixture_log_weights, proposal_terms
from gvae.evaluation.analysis import rate_distortion, sample_points, unit_activity
from gvae.evaluation.gaps import inference_gaps
from gvae.evaluation.refine import RefineOptions, refine_heads
from tests.gradcheck import check_vjp

D, N, GRID = 6, 8, (2, 3)
FAMILIES = ("diagonal", "ar1", "rank1", "chain", "grid", "extgrid", "full")
# The refinement as the tests run it: 100 samples a step (a step of these tiny models costs its Python
# overhead, whatever the samples), a larger rate and a tighter stopping rule than the command's defaults,
# so that it ends within 0.01 nats of each family's optimum (0.004 at most was seen) in 600-1,300 steps.
# (The former lr=0.1, 10 samples and 300-step windows got as close in 2-6 times the steps.)
TIGHT = RefineOptions(lr=0.2, samples=100, check_every=100, tol=1e-3, max_decays=2, max_steps=8000)
# The estimates test keeps the settings its bounds were set under: the diagonal family's log p(x) estimate
# (K = 4,000) spreads by -0.25 to +0.39 nats over seeds 3-8, and its bound of 0.06 holds for seed 3 with
# this refinement's use of the random stream.
ESTIMATES = RefineOptions(lr=0.1, check_every=300, tol=1e-3, max_decays=2, max_steps=8000)
# rank1 converges slowest (2,900 steps): where its refinement stops (0.019 nats above the optimum; up to
# 0.03 with 50 samples a step), BFGS on the exact KL, started from the refined D and u, still goes down
# to the optimum: an ill-conditioned valley, not a local minimum.
TOLERANCE = {"rank1": 0.04}
NESTINGS = [("diagonal", "chain"), ("chain", "full"), ("diagonal", "grid"), ("grid", "extgrid"),
            ("extgrid", "full"), ("ar1", "chain"), ("diagonal", "rank1"), ("rank1", "full")]


# --- the factor-analysis model and its exact posterior ----------------------------------------------

def fa_model(posterior, seed=0, constant_encoder=True):
    """A float64 VAE with no hidden layers and a Gaussian likelihood set to p(x|z) = N(W z + b, Psi).
    Returns (model, params, W (N, D), b (N,), psi (N,)) with psi the variances the likelihood uses."""
    rng = np.random.default_rng(seed)
    options = {"grid_shape": GRID} if "grid" in posterior else {}
    model = VAE(N, D, [], "tanh", posterior, "gaussian", np.float64, posterior_options=options)
    params = model.new_params(np.random.default_rng(seed + 1)).views
    W = rng.standard_normal((N, D)) * 0.8  # the same decoder for every family
    b = rng.standard_normal(N) * 0.3
    params["dec.W0"][...] = W.T
    params["dec.b0"][...] = b
    params["lik.psi"][...] = [positive_inverse(v, model.likelihood.floor) for v in rng.uniform(0.2, 0.5, N)]
    if constant_encoder:  # one q for every x, far from every posterior (and u != 0 for rank1: u = 0 is a
        params["enc.W0"][...] = 0  # stationary point of its ELBO, which no gradient leaves)
        params["enc.b0"][...] = rng.standard_normal(params["enc.b0"].shape) * 0.1
    psi = np.asarray(positive(params["lik.psi"], model.likelihood.floor))
    return model, params, W, b, psi


def fa_data(W, b, psi, n=4, seed=5):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, W.shape[1])) @ W.T + b + rng.standard_normal((n, W.shape[0])) * np.sqrt(psi)


def exact_posterior(W, b, psi, x):
    """(P (D, D), mean (B, D), log p(x) (B,)) in float64."""
    P = np.eye(W.shape[1]) + W.T @ (W / psi[:, None])
    mean = np.linalg.solve(P, W.T @ ((x - b) / psi).T).T
    C = W @ W.T + np.diag(psi)
    r = x - b
    logp = -0.5 * (np.einsum("bi,ij,bj->b", r, np.linalg.inv(C), r) + np.linalg.slogdet(C)[1]
                   + len(b) * math.log(2 * math.pi))
    return P, mean, logp


def exact_encoder(model, params, W, b, psi):
    """Sets the "full" family's encoder of ``fa_model`` to the exact posterior: its mean to A (x - b)
    (the linear map of the posterior mean), its factor to the Cholesky factor of P, the same for every x."""
    P = np.eye(D) + W.T @ (W / psi[:, None])
    A = np.linalg.solve(P, W.T / psi)
    params["enc.W0"][:, :D] = A.T
    params["enc.b0"][:D] = -A @ b
    R = np.linalg.cholesky(P)
    band = np.array([[R[i, i - k] if i >= k else 0.0 for i in range(D)] for k in range(D)])
    band[0] = [positive_inverse(v, model.layers[0].family.floor) for v in band[0]]
    params["enc.b0"][D:] = band.ravel()


def exact_elbo(W, b, psi, x, mu, Pq):
    """The ELBO of q = N(mu, Pq^-1) (mu (B, D), Pq (B, D, D)) in closed form: E_q log N(x; W z + b, Psi)
    - KL(q || N(0, I))."""
    S = np.linalg.inv(Pq)
    r = x - mu @ W.T - b
    rec = -0.5 * (np.sum(r * r / psi, -1) + np.einsum("ij,bjk,ik->b", W / psi[:, None], S, W)
                  + np.sum(np.log(psi)) + len(b) * math.log(2 * math.pi))
    kl = 0.5 * (np.trace(S, axis1=1, axis2=2) + np.sum(mu * mu, -1) - mu.shape[-1] - np.linalg.slogdet(S)[1])
    return rec - kl


def kl_to_posterior(S, P):
    """KL(N(0, S) || N(0, P^-1)), float64."""
    return 0.5 * (np.trace(P @ S) - len(P) - np.linalg.slogdet(P @ S)[1])


# --- the smallest KL from each family to the posterior (independent of gvae) -------------------------

def sparsity(name, d=D, grid=GRID):
    """The (row, column) entries of the lower-triangular factor L (P = L L^T) that the family may fill,
    from lattice coordinates (row-major units of a grid[0] x grid[1] lattice)."""
    rows, cols = grid
    entries = set()
    for i in range(d):
        r, c = divmod(i, cols)
        entries.add((i, i))
        if name == "full":
            entries.update((i, j) for j in range(i))
        elif name == "chain" and i > 0:
            entries.add((i, i - 1))
        elif name in ("grid", "extgrid"):
            if c > 0:
                entries.add((i, i - 1))                  # left neighbour
            if r > 0:
                entries.add((i, i - cols))               # upper neighbour
            if name == "extgrid" and r > 0 and c > 0:
                entries.add((i, i - cols - 1))           # upper left
            if name == "extgrid" and r > 0 and c < cols - 1:
                entries.add((i, i - cols + 1))           # upper right
    return sorted(entries)


def min_kl_factor(P, entries):
    """min over L with nonzeros on ``entries`` (diagonal positive, as log) of KL(N(0, (L L^T)^-1) || N(0, P^-1))."""
    d = len(P)
    diag = [k for k, (i, j) in enumerate(entries) if i == j]
    R = np.linalg.cholesky(P)  # P = R R^T

    def unpack(theta):
        L = np.zeros((d, d))
        vals = theta.copy()
        vals[diag] = np.exp(vals[diag])
        for v, (i, j) in zip(vals, entries):
            L[i, j] = v
        return L

    def kl(theta):
        L = unpack(theta)
        A = np.linalg.solve(L, R)  # tr(P S) = tr(L^-1 R R^T L^-T) = |L^-1 R|_F^2
        return 0.5 * (np.sum(A * A) - d - 2 * np.sum(np.log(np.abs(np.diag(R)))) + 2 * np.sum(np.log(np.diag(L))))

    starts = [np.zeros(len(entries)), np.array([math.log(R[i, j]) if i == j else R[i, j] for i, j in entries])]
    return min(minimize(kl, t, method="BFGS", options={"gtol": 1e-10}).fun for t in starts)


def min_kl(name, P):
    d = len(P)
    if name == "diagonal":
        return 0.5 * (np.sum(np.log(np.diag(P))) - np.linalg.slogdet(P)[1])
    starts = np.random.default_rng(0).standard_normal((3, 2 * d))
    if name == "ar1":  # S = s T(rho), T_ij = rho^|i-j|
        idx = np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
        return min(minimize(lambda t: kl_to_posterior(np.exp(t[0]) * np.tanh(t[1]) ** idx, P), t0[:2],
                            method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}).fun
                   for t0 in starts)
    if name == "rank1":  # precision D + u u^T
        return min(minimize(lambda t: kl_to_posterior(np.linalg.inv(np.diag(np.exp(t[:d])) + np.outer(t[d:], t[d:])),
                                                      P), t0, method="BFGS", options={"gtol": 1e-10}).fun
                   for t0 in starts)
    return min_kl_factor(P, sparsity(name))


# --- the tests -------------------------------------------------------------------------------------

def refined_gap(name):
    """(refined approximation gap per point (exact, float64), smallest KL of the family, refinement info) on
    4 points. Each family's test refines its own (0.5-4 s), so the test processes share them out."""
    model, params, W, b, psi = fa_model(name)
    x = fa_data(W, b, psi)
    P, _, logp = exact_posterior(W, b, psi, x)
    h, info = refine_heads(model, params, x, encoder_heads(model, params, x), np.random.default_rng(0), TIGHT)
    family = model.layers[0].family
    q = family.split(h, D)
    return logp - exact_elbo(W, b, psi, x, q.mu, family.precision(q)), min_kl(name, P), info


def smallest_kl(name):
    """The family's smallest KL to the exact posterior (its precision is the same for every x)."""
    _, _, W, b, psi = fa_model(name)
    return min_kl(name, exact_posterior(W, b, psi, fa_data(W, b, psi))[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_the_refined_elbo_is_log_px_minus_the_smallest_kl(name):
    gap, smallest, info = refined_gap(name)
    assert np.all(gap >= smallest - 1e-8), (gap, smallest)  # no q of the family does better than its best
    assert np.all(gap <= smallest + TOLERANCE.get(name, 0.01)), (gap, smallest, info["steps"])  # and gets close
    assert info["stopped"] == "plateau" and info["restarts"] == 0
    if name == "full":  # the dense family closes the approximation gap
        assert smallest < 1e-9 and np.all(gap < 0.01)


@pytest.mark.parametrize("inner, outer", NESTINGS)
def test_the_gaps_order_as_the_families_nest(inner, outer):
    """A family inside another has the larger smallest KL, by more than the refinement's tolerance plus a
    margin: with the test above (each refined gap within its tolerance of its family's smallest KL) the
    refined gaps are then ordered too, by at least 0.1 - tolerance > 0.05 nats."""
    assert max(TOLERANCE.get(outer, 0.01), TOLERANCE.get(inner, 0.01)) < 0.05
    assert smallest_kl(inner) > smallest_kl(outer) + 0.1


def test_the_chain_is_not_inside_the_grid():
    """A posterior whose precision factor is a full chain: the chain family matches it exactly, the grid,
    which cannot link unit 3 (first of row 2) to unit 2 (last of row 1), does not."""
    L = np.eye(D) + np.diag(np.full(D - 1, 0.9), -1)
    P = L @ L.T
    assert min_kl("chain", P) < 1e-9 and min_kl("grid", P) > 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", ["diagonal", "chain", "full"])
def test_the_estimates_of_gvae_analyze_match_the_closed_forms(name):
    """inference_gaps on the factor-analysis model: log p(x) (importance sampled), both ELBOs (Monte Carlo)
    and the gaps against the exact values, within their Monte Carlo error."""
    model, params, W, b, psi = fa_model(name)
    x = fa_data(W, b, psi)
    P, _, logp = exact_posterior(W, b, psi, x)
    k = 4000
    per, refinements = inference_gaps(model, params, x, np.random.default_rng(3), iw_samples=k, options=ESTIMATES)
    family = model.layers[0].family
    q0 = family.split(encoder_heads(model, params, x), D)
    amortised = exact_elbo(W, b, psi, x, q0.mu, family.precision(q0))
    z = family.sample(q0, np.random.default_rng(4).standard_normal((k, len(x), D)))
    error = model.likelihood.log_prob(model.decode(params, z), x, params).std(axis=0) / np.sqrt(k)  # of the ELBO's mean
    offset = model.likelihood.nats_offset()  # the estimates are in nats of 8-bit data (see Likelihood.nats_offset)
    assert np.all(np.abs(per["elbo_amortised"] - offset - amortised) < 5 * error)
    # log p(x): a stochastic lower bound (one estimate may exceed the truth by its noise: 0.03 was seen for
    # the chain), close to the truth where the refined q is close to the posterior (exact for full)
    noise, close = (0.01, 0.02) if name == "full" else (0.06, 0.2)
    assert np.all(per["log_likelihood"] - offset < logp + noise)
    assert np.all(per["log_likelihood"] - offset > logp - close)
    np.testing.assert_allclose(per["approximation_gap"], min_kl(name, P), atol=close + 0.05)
    assert np.all(per["amortisation_gap"] > 1.0)  # the constant encoder is far from every posterior
    np.testing.assert_allclose(per["inference_gap"], per["approximation_gap"] + per["amortisation_gap"], rtol=1e-12)
    assert len(refinements) == 1 and refinements[0]["steps"] >= ESTIMATES.check_every


def test_the_mixture_estimate_is_unbiased_for_p_x():
    """mean over repeats of p^(x) / p(x) is 1 (within its Monte Carlo error) for a poor and a good proposal."""
    model, params, W, b, psi = fa_model("diagonal")
    x = fa_data(W, b, psi, n=1)
    P, mean, logp = exact_posterior(W, b, psi, x)
    family = model.layers[0].family
    good = np.concatenate([mean, [[positive_inverse(v, family.floor) for v in 1 / np.sqrt(np.diag(P))]]], 1)
    proposals = [(model, params), (LocalVAE(model), with_heads(params, good))]
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(400):
        terms = proposal_terms(model, params, proposals, x, [rng.standard_normal((5, 1, D)) for _ in proposals])
        logw = np.concatenate([mixture_log_weights(t) for t in terms])
        ratios.append(np.exp(logw - logp).mean())
    ratios = np.asarray(ratios)
    assert abs(ratios.mean() - 1) < 4 * ratios.std() / np.sqrt(len(ratios)) + 1e-3


def test_mixture_log_weights_against_scipy():
    from scipy.stats import multivariate_normal
    model, params, W, b, psi = fa_model("full", constant_encoder=False)
    x = fa_data(W, b, psi, n=2)
    rng = np.random.default_rng(1)
    family = model.layers[0].family
    heads = [rng.standard_normal((2, family.head_size(D))) * 0.3 for _ in range(2)]
    qs = [family.split(h, D) for h in heads]
    eps = [rng.standard_normal((3, 2, D)) for _ in qs]
    terms = proposal_terms(model, params, [(LocalVAE(model), with_heads(params, h)) for h in heads], x, eps)
    for i, t in enumerate(terms):
        z = family.sample(qs[i], eps[i])
        for bb in range(2):
            dens = [multivariate_normal(q.mu[bb], np.linalg.inv(family.precision(q)[bb])).pdf(z[:, bb])
                    for q in qs]
            rec = np.array([multivariate_normal(W @ zz + b, np.diag(psi)).logpdf(x[bb]) for zz in z[:, bb]])
            prior = multivariate_normal(np.zeros(D), np.eye(D)).logpdf(z[:, bb])
            expected = rec + prior - np.log(0.5 * dens[0] + 0.5 * dens[1])
            np.testing.assert_allclose(mixture_log_weights(t)[:, bb], expected, rtol=1e-10)


# --- the pieces -------------------------------------------------------------------------------------

@given(name=st.sampled_from(FAMILIES), seed=st.integers(0, 2 ** 16))
def test_the_local_elbo_gradient_wrt_the_heads(name, seed):
    """The ELBO of LocalVAE as a function of the heads, against central differences (float64)."""
    model, params, W, b, psi = fa_model(name, seed=seed % 7)
    rng = np.random.default_rng(seed)
    x = fa_data(W, b, psi, n=3, seed=seed)
    h = rng.standard_normal((3, model.layers[0].family.head_size(D))) * 0.5
    eps = rng.standard_normal((2, 3, D))
    local = LocalVAE(model)
    check_vjp(lambda heads: elbo(local, with_heads(params, heads), x, eps, "analytic"), [h], rtol=1e-5, atol=1e-7)


def test_local_heads_must_fit_the_points():
    model, params, W, b, psi = fa_model("chain")
    x = fa_data(W, b, psi, n=3)
    h = encoder_heads(model, params, x)
    local = LocalVAE(model)
    np.testing.assert_array_equal(local.encode(with_heads(params, h), x).mu, model.encode(params, x).mu)
    with pytest.raises(ValueError, match="do not fit 2 data points"):
        local.encode(with_heads(params, h), x[:2])
    with pytest.raises(ValueError, match=r"expected \(3, 18\)"):
        local.encode({**params, HEADS: h[:, :-1]}, x)


def test_refinement_never_leaves_a_point_worse_than_its_encoder():
    """A point already at its optimum (the diagonal family started at its best q) keeps a held-out ELBO
    at least its encoder's, and the trace starts from the encoder's value."""
    model, params, W, b, psi = fa_model("diagonal")
    x = fa_data(W, b, psi, n=2)
    P, mean, _ = exact_posterior(W, b, psi, x)
    family = model.layers[0].family
    best = np.concatenate([mean, np.tile([positive_inverse(v, family.floor) for v in 1 / np.sqrt(np.diag(P))],
                                         (2, 1))], axis=1)
    h, info = refine_heads(model, params, x, best, np.random.default_rng(0), RefineOptions(max_steps=200))
    q0, q = (family.split(v, D) for v in (best, h))
    e0, e = (exact_elbo(W, b, psi, x, v.mu, family.precision(v)) for v in (q0, q))
    assert np.all(e >= e0 - 0.01) and info["trace"][0][0] == 0 and len(info["trace"]) >= 2


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("terminal", [True, False])
def test_the_progress_bar_ends_at_the_steps_taken(capsys, monkeypatch, terminal):
    """A refinement that stops at a plateau before max_steps: the bar's last count and total (off a
    terminal: its last line's) are the steps that ran (3 here, one before each of three restarts), not
    max_steps."""
    model = VAE(N, D, [], "tanh", "diagonal", "gaussian", np.float32)
    params = model.new_params(np.random.default_rng(0)).views
    x = np.random.default_rng(1).standard_normal((2, N)).astype(np.float32)
    monkeypatch.setattr("sys.stderr.isatty", lambda: terminal)
    _, refinements = inference_gaps(model, params, x, np.random.default_rng(0), iw_samples=4, progress=True,
                                    options=RefineOptions(lr=1e30, decay=0.5, max_decays=2, max_steps=50))
    assert refinements[0]["steps"] == 3
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    if terminal:
        assert " 3/3 " in last and "/50" not in last
    else:
        assert last.startswith("refining q for 2 points: 3 of 3 steps (100%) in ")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_diverging_refinement_restarts_and_falls_back_to_the_encoder():
    """A learning rate so large that the first step overflows float32: every step is non-finite, each
    restart lowers the rate, the refinement ends after max_decays + 1 of them with the encoder's heads."""
    model = VAE(N, D, [], "tanh", "diagonal", "gaussian", np.float32)
    params = model.new_params(np.random.default_rng(0)).views
    x = np.random.default_rng(1).standard_normal((2, N)).astype(np.float32)
    h0 = np.ascontiguousarray(encoder_heads(model, params, x))
    h, info = refine_heads(model, params, x, h0, np.random.default_rng(0),
                           RefineOptions(lr=1e30, decay=0.5, max_decays=2, max_steps=50))
    assert info["restarts"] == 3 and info["stopped"] == "plateau" and info["steps"] == 3  # one step before each
    np.testing.assert_array_equal(h, h0)


def test_a_non_finite_start_is_refused():
    model, params, W, b, psi = fa_model("diagonal")
    x = fa_data(W, b, psi, n=2)
    x[1, 0] = np.nan
    with pytest.raises(ValueError, match="not finite for 1 of 2 points"):
        refine_heads(model, params, x, encoder_heads(model, params, x), np.random.default_rng(0))


@pytest.mark.parametrize("options, message", [
    (dict(max_steps=0), "max_steps must be an integer >= 1"), (dict(samples=2.5), "samples must be an integer"),
    (dict(lr=0.0), "lr out of range"), (dict(lr=float("nan")), "lr out of range"), (dict(decay=1.0), "decay"),
    (dict(tol=-1.0), "tol out of range"), (dict(max_decays=-1), "max_decays must be an integer >= 0"),
    (dict(check_every=True), "check_every must be an integer")])
def test_bad_refinement_options(options, message):
    with pytest.raises(ValueError, match=message):
        RefineOptions(**options)


def test_unit_activity_counts_the_units_the_encoder_uses():
    """Units whose posterior mean the encoder holds constant have activity 0; the others, the variance of
    their mean over the data (against NumPy)."""
    model, params, W, b, psi = fa_model("chain", constant_encoder=False)
    params["enc.W0"][:, :2] = 0  # mu_0 and mu_1 no longer depend on x
    x = fa_data(W, b, psi, n=50)
    [activity] = unit_activity(model, params, x, batch_size=7)
    expected = np.var(x @ params["enc.W0"][:, :D] + params["enc.b0"][:D], axis=0)
    np.testing.assert_allclose(activity, expected, rtol=1e-10, atol=1e-15)
    assert np.all(activity[:2] < 1e-20) and np.all(activity[2:] > 0.01)  # (rounding of a constant mean)
    with pytest.raises(ValueError, match="at least 2"):
        unit_activity(model, params, x[:1])


def test_rate_and_distortion_against_the_closed_forms():
    """Rate = KL(q || N(0, I)) exactly; distortion = -E_q log p(x|z) within its Monte Carlo error (q the
    exact posterior, so that the ELBO is log p(x))."""
    model, params, W, b, psi = fa_model("full")
    exact_encoder(model, params, W, b, psi)
    family = model.layers[0].family
    x = fa_data(W, b, psi, n=5)
    [rate], distortion = rate_distortion(model, params, x, np.random.default_rng(0), samples=4000, batch_size=2)
    q = model.encode(params, x)
    np.testing.assert_allclose(rate, family.kl(q), rtol=1e-12)
    elbo_exact = exact_elbo(W, b, psi, x, q.mu, family.precision(q))
    np.testing.assert_allclose(elbo_exact, exact_posterior(W, b, psi, x)[2], rtol=1e-10)
    offset = model.likelihood.nats_offset()  # distortion is in nats of 8-bit data
    np.testing.assert_allclose(-(rate + distortion) - offset, elbo_exact, atol=0.1)


def test_sample_points():
    idx = sample_points(30, 5, seed=1)
    assert len(set(idx.tolist())) == 5 and np.all(np.diff(idx) > 0) and idx.max() < 30
    np.testing.assert_array_equal(idx, sample_points(30, 5, seed=1))
    with pytest.raises(ValueError, match="integer from 1 to 30, got 31"):
        sample_points(30, 31, seed=0)
    with pytest.raises(ValueError, match="integer from 1 to 30, got 0"):
        sample_points(30, 0, seed=0)


# --- gvae analyze ----------------------------------------------------------------------------------

def _strict_json(path):
    def refuse(token):
        raise ValueError(f"{path} holds {token}, not strict JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny chain-posterior run on generated data: (run folder, data file)."""
    from tests.helpers import write_data
    root = tmp_path_factory.mktemp("analyze")
    path = write_data(root / "tiny.npz")
    run = root / "chain"
    assert main(["train", "--data", str(path), "--limit", "80", "--epochs", "1", "--latent", "4", "--hidden", "8",
                 "--posterior", "chain", "--batch-size", "40", "--out", str(run), "--quiet"]) == 0
    return run, path


@pytest.mark.slow
def test_analyze_writes_analysis_json_and_pictures(trained_run, capsys):
    run, data = trained_run
    rc = main(["analyze", str(run), "--data", str(data), "--points", "5", "--iw-samples", "30",
               "--refine-steps", "40", "--limit", "30", "--surgery-points", "20", "--surgery-samples", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "active units" in out and "approximation gap" in out and "analysis.json" in out
    # each ELBO says on what and from how many draws, beside gvae train's and gvae eval's of the same model
    assert "nats on 30 test images (distortion from 10 draws of z per image)" in out, out
    assert "5 points: log p(x) " in out and " (L_60), ELBO refined " in out and " (30 draws of z each); " in out, out
    assert "ELBO surgery, 20 points: mean KL" in out and "mutual information" in out
    result = _strict_json(run / "analysis.json")
    layer = result["layers"][0]
    assert layer["layer"] == 0 and layer["latent"] == 4 and layer["posterior"] == "chain"
    assert len(layer["activity"]) == 4 and layer["active_units"] == sum(a > 0.01 for a in layer["activity"])
    assert result["n_test"] == 30 and result["posterior"] == "chain"
    assert result["elbo"] == pytest.approx(-(result["rate"] + result["distortion"]))
    gaps = result["gaps"]
    assert gaps["points"] == 5 and len(gaps["indices"]) == 5 and max(gaps["indices"]) < 30
    assert all(len(v) == 5 for v in gaps["per_point"].values())
    assert gaps["inference_gap"] == pytest.approx(gaps["approximation_gap"] + gaps["amortisation_gap"])
    assert gaps["approximation_gap"] == pytest.approx(gaps["log_likelihood"] - gaps["elbo_refined"])
    assert gaps["refine"]["max_steps"] == 40 and gaps["refinement"]["steps"] == [40]
    assert all(np.isfinite(v) for k, v in gaps.items() if isinstance(v, float))
    surgery = layer["surgery"]
    assert {k: surgery[k] for k in ("n_points", "samples")} == {"n_points": 20, "samples": 3}
    assert surgery["log_n"] == pytest.approx(math.log(20)) and surgery["mutual_information"] <= surgery["log_n"]
    assert surgery["mean_kl"] == pytest.approx(surgery["mutual_information"] + surgery["marginal_kl"], rel=1e-9)
    assert all(np.isfinite(surgery[f"{k}_sem"]) for k in ("mean_kl", "mutual_information", "marginal_kl"))
    assert "surgery_note" not in result and "surgery" in result["seconds"]
    if importlib.util.find_spec("matplotlib") is None:
        assert result["pictures"] == [] and "matplotlib" in result["pictures_note"]
    else:
        assert result["pictures"] == ["gaps.png", "unit_activity.png"]
        assert all((run / name).stat().st_size > 1000 for name in result["pictures"])


@pytest.mark.slow
def test_analyze_is_reproducible_and_a_new_run_removes_it(trained_run, tmp_path):
    run, data = trained_run
    argv = ["--data", str(data), "--points", "2", "--iw-samples", "10", "--refine-steps", "5", "--limit", "10",
            "--quiet", "--seed", "3"]
    assert main(["analyze", str(run), *argv]) == 0
    first = _strict_json(run / "analysis.json")
    assert main(["analyze", str(run), *argv]) == 0
    second = _strict_json(run / "analysis.json")
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert drop(first) == drop(second) and first["seed"] == 3
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert main(["train", "--data", str(data), "--limit", "40", "--epochs", "1", "--latent", "4", "--hidden", "8",
                 "--out", str(copy), "--overwrite", "--quiet"]) == 0
    assert not (copy / "analysis.json").exists() and not (copy / "gaps.png").exists()


def test_analyze_refuses_a_single_test_image(trained_run, capsys):
    run, data = trained_run
    rc = main(["analyze", str(run), "--data", str(data), "--quiet", "--points", "1", "--limit", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "needs at least 2, got 1" in err


@pytest.mark.slow
def test_analyze_with_more_points_than_images_uses_them_all_and_says_so(trained_run, capsys):
    run, data = trained_run
    rc = main(["analyze", str(run), "--data", str(data), "--points", "7", "--limit", "4", "--iw-samples", "5",
               "--refine-steps", "3"])
    assert rc == 0
    gaps = _strict_json(run / "analysis.json")["gaps"]
    assert gaps["points"] == 4 and gaps["indices"] == [0, 1, 2, 3]
    assert gaps["points_note"] == "7 points asked, 4 test images: all 4 used"
    surgery = _strict_json(run / "analysis.json")["layers"][0]["surgery"]
    assert surgery["n_points"] == 4 and surgery["points_note"] == "1000 points asked, 4 test images: all 4 used"
    out = capsys.readouterr().out
    assert "7 points asked, 4 test images: all 4 used" in out and "(1000 points asked, 4 test images" in out


def test_analyze_refuses_more_memory_than_the_machine_has_before_any_work(trained_run, capsys):
    run, data = trained_run
    rc = main(["analyze", str(run), "--data", str(data), "--quiet", "--iw-samples", "2000000000"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--iw-samples" in err and "available" in err


def test_analyze_without_a_run(tmp_path, capsys):
    rc = main(["analyze", str(tmp_path / "absent"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "there is no run folder at" in err
    (tmp_path / "empty").mkdir()
    rc = main(["analyze", str(tmp_path / "empty"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "checkpoint.npz" in err


@pytest.mark.parametrize("flag, value, message", [
    ("--points", "0", "expected a positive integer"), ("--iw-samples", "-3", "expected a positive integer"),
    ("--refine-steps", "2.5", "expected a positive integer"), ("--seed", "-1", "non-negative integer"),
    ("--limit", "x", "expected a positive integer"), ("--surgery-points", "0", "expected a positive integer"),
    ("--surgery-samples", "1.5", "expected a positive integer")])
def test_analyze_bad_flags(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(tmp_path), flag, value])
    assert e.value.code == 2 and message in capsys.readouterr().err
