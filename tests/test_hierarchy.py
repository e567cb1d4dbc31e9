"""Hierarchies of stochastic layers: the log-weights against a dense reference, a linear-Gaussian
hierarchy whose log p(x) is known exactly, the ELBO's estimators against each other, and gradients of
the hierarchical ELBO and IWAE bound by finite differences."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.special import expit
from scipy.stats import multivariate_normal, norm

from gvae.model import VAE
from gvae.model.vae import layer_widths
from gvae.model.posteriors import dense_factor
from gvae.model.objectives import elbo, iwae_bound, layer_terms, log_weights
from gvae.evaluation.evaluate import importance_sampling
from gvae.training.validation import per_example_elbo
from tests.gradcheck import check_vjp

INFERENCE = ["bottom-up", "top-down"]
FLOOR = 1e-4  # the floor of every scale (posterior families' default, the conditional priors')


def mlp(params, prefix, x, n_layers):
    """The numpy forward pass of a tanh MLP ``prefix`` with n_layers dense layers (the last linear),
    returning (features before the last layer, output)."""
    for i in range(n_layers - 1):
        x = np.tanh(x @ params[f"{prefix}W{i}"] + params[f"{prefix}b{i}"])
    i = n_layers - 1
    return x, x @ params[f"{prefix}W{i}"] + params[f"{prefix}b{i}"]


def softplus(v):
    return np.logaddexp(0, v) + FLOOR


def dense_sample_and_logpdf(family, head, d, eps):
    """z = mu + (L^T)^-1 eps (banded) or mu + sigma eps (diagonal), and log q(z), densely from the
    dense precision, for one head row per sample: head (S, H), eps (S, d)."""
    q = family.split(head, d)
    prec = family.precision(q)
    z, logq = np.empty_like(eps), np.empty(len(eps))
    for s in range(len(eps)):
        if family.banded:
            z[s] = q.mu[s] + np.linalg.solve(dense_factor(q.L[s], q.offsets).T, eps[s])
        else:
            z[s] = q.mu[s] + q.sigma[s] * eps[s]
        r = z[s] - q.mu[s]  # the Gaussian density from the dense precision (better conditioned than Sigma)
        logq[s] = -0.5 * r @ prec[s] @ r + 0.5 * np.linalg.slogdet(prec[s])[1] - 0.5 * d * np.log(2 * np.pi)
    return z, logq


@pytest.mark.parametrize("inference", INFERENCE)
@pytest.mark.parametrize("posteriors", [("chain", "diagonal"), ("diagonal", "grid"), ("extgrid", "chain")])
def test_log_weights_against_a_dense_reference(inference, posteriors):
    """log w = log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1, z2 | x), every density dense (scipy's
    for the priors, the dense precision for q), the networks by hand, z1 and z2 drawn from the noise."""
    rng = np.random.default_rng(7)
    n, d1, d2, S, B = 5, 6, 4, 3, 2
    grids = [{"grid_shape": (2, 3)} if p == "extgrid" else {} for p in posteriors]
    model = VAE(n, [d1, d2], [[3], [4]], "tanh", posterior=list(posteriors), dtype=np.float64,
                posterior_options=grids, inference=inference)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in model.new_params(rng).views.items()}
    x = (rng.random((B, n)) < 0.5).astype(np.float64)
    eps = rng.standard_normal((S, B, d1 + d2))
    rec, log_ratio = log_weights(model, params, x, eps)
    f1, f2 = (layer.family for layer in model.layers)
    for b in range(B):
        xb = np.repeat(x[b:b + 1], S, axis=0)
        e1, e2 = eps[:, b, :d1], eps[:, b, d1:]
        if inference == "bottom-up":
            z1, logq1 = dense_sample_and_logpdf(f1, mlp(params, "enc.", xb, 2)[1], d1, e1)
            z2, logq2 = dense_sample_and_logpdf(f2, mlp(params, "enc2.", z1, 2)[1], d2, e2)
        else:
            h1 = mlp(params, "enc.", xb, 2)[0]
            z2, logq2 = dense_sample_and_logpdf(f2, mlp(params, "enc2.", h1, 2)[1], d2, e2)
            head1 = h1 @ params["enc.W1"] + params["enc.b1"] + z2 @ params["enc.Wz"]
            z1, logq1 = dense_sample_and_logpdf(f1, head1, d1, e1)
        prior = mlp(params, "dec2.", z2, 2)[1]
        logp1 = norm(prior[:, :d1], softplus(prior[:, d1:])).logpdf(z1).sum(-1)
        logp2 = norm().logpdf(z2).sum(-1)
        p = expit(mlp(params, "dec.", z1, 2)[1])
        logpx = np.sum(xb * np.log(p) + (1 - xb) * np.log1p(-p), axis=-1)
        np.testing.assert_allclose(rec[:, b], logpx, rtol=1e-10)
        np.testing.assert_allclose(log_ratio[:, b], logp1 + logp2 - logq1 - logq2, rtol=1e-9, atol=1e-9)
    zs = model.prior_sample(params, eps[:, 0])  # ancestral: z2 = eps2, z1 = m + s eps1
    prior = mlp(params, "dec2.", eps[:, 0, d1:], 2)[1]
    np.testing.assert_allclose(zs[1], eps[:, 0, d1:])
    np.testing.assert_allclose(zs[0], prior[:, :d1] + softplus(prior[:, d1:]) * eps[:, 0, :d1], rtol=1e-12)


def conditional(mean, cov, keep, given):
    """The Gaussian of the coordinates ``keep`` given those in ``given`` of N(mean, cov): (A, c, C) with
    mean A v + c for the given values v, and covariance C."""
    K = cov[np.ix_(keep, given)] @ np.linalg.inv(cov[np.ix_(given, given)])
    return K, mean[keep] - K @ mean[given], cov[np.ix_(keep, keep)] - K @ cov[np.ix_(given, keep)]


def set_full_head(model, params, prefix, weights, bias, cov, d):
    """Set the last layer ``prefix`` (no hidden layers) so that the full family's head is the Gaussian
    of mean ``inputs @ weights + bias`` and covariance ``cov``: mu's columns linear, the band rows of
    the precision's Cholesky factor constant (the main diagonal through the inverse of softplus + floor)."""
    L = np.linalg.cholesky(np.linalg.inv(cov))
    W, b = params[f"{prefix}W0"], params[f"{prefix}b0"]
    W[...] = 0
    W[:, :d] = weights
    b[:d] = bias
    for k in range(d):
        row = np.array([L[i, i - k] if i >= k else 0.0 for i in range(d)])
        b[d + k * d:d + (k + 1) * d] = np.log(np.expm1(row - FLOOR)) if k == 0 else row


def linear_gaussian_hierarchy(inference, seed=0, n=5, d1=3, d2=2, points=30):
    """Two linear-Gaussian layers, z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, diag s^2), x | z1 ~ N(B z1 + b,
    diag psi), with the encoders (``full`` family, no hidden layers) set to the exact posterior in the
    model's inference order. Returns (model, params, x, exact log p(x) in the reported nats)."""
    rng = np.random.default_rng(seed)
    model = VAE(n, [d1, d2], [], "tanh", posterior="full", likelihood="gaussian", dtype=np.float64,
                inference=inference)
    params = model.new_params(rng).views
    params["dec2.W0"][:, d1:] = 0  # a constant scale of p(z1|z2)
    params["dec2.b0"][...] = rng.standard_normal(2 * d1) * 0.5
    params["dec.b0"][...] = rng.standard_normal(n)
    params["lik.psi"][...] = rng.uniform(-1, 0.5, n)
    A, a = params["dec2.W0"][:, :d1].T, params["dec2.b0"][:d1]
    s2 = softplus(params["dec2.b0"][d1:]) ** 2
    Bm, b = params["dec.W0"].T, params["dec.b0"]
    psi = np.logaddexp(0, params["lik.psi"]) + model.likelihood.floor
    # the joint Gaussian of (z1, z2, x)
    m = np.concatenate([a, np.zeros(d2), Bm @ a + b])
    c11 = A @ A.T + np.diag(s2)
    cov = np.block([[c11, A, c11 @ Bm.T], [A.T, np.eye(d2), A.T @ Bm.T],
                    [Bm @ c11, Bm @ A, Bm @ c11 @ Bm.T + np.diag(psi)]])
    i1, i2, ix = list(range(d1)), list(range(d1, d1 + d2)), list(range(d1 + d2, d1 + d2 + n))
    if inference == "bottom-up":  # q(z1|x) q(z2|z1): p(z2 | z1, x) = p(z2 | z1)
        K, c, C = conditional(m, cov, i1, ix)
        set_full_head(model, params, "enc.", K.T, c, C, d1)
        K, c, C = conditional(m, cov, i2, i1)
        set_full_head(model, params, "enc2.", K.T, c, C, d2)
    else:  # q(z2|x) q(z1|z2, x)
        K, c, C = conditional(m, cov, i2, ix)
        set_full_head(model, params, "enc2.", K.T, c, C, d2)
        K, c, C = conditional(m, cov, i1, ix + i2)
        set_full_head(model, params, "enc.", K[:, :n].T, c, C, d1)
        params["enc.Wz"][...] = 0
        params["enc.Wz"][:, :d1] = K[:, n:].T
    x = rng.multivariate_normal(m[ix], cov[np.ix_(ix, ix)], size=points)
    exact = multivariate_normal(m[ix], cov[np.ix_(ix, ix)]).logpdf(x) + model.likelihood.nats_offset()
    return model, params, x, exact


@pytest.mark.parametrize("inference", INFERENCE)
def test_exact_posterior_gives_log_p_x_in_every_weight(inference):
    """With q the exact posterior, every importance weight is p(x): the hierarchical log-weights, the
    conditioning of each layer and the evaluation agree with the closed-form log p(x)."""
    model, params, x, exact = linear_gaussian_hierarchy(inference)
    eps = np.random.default_rng(1).standard_normal((4, len(x), model.noise_size))
    rec, log_ratio = log_weights(model, params, x, eps)
    np.testing.assert_allclose(rec + log_ratio + model.likelihood.nats_offset(), np.broadcast_to(exact, rec.shape),
                               rtol=1e-9, atol=1e-9)
    est = importance_sampling(model, params, x, 10, 2, ks=(1, 5), progress=False)
    for key in ("log_likelihood", "iwae_1", "iwae_5"):
        np.testing.assert_allclose(est[key], exact, rtol=1e-9, atol=1e-9)
    # the ELBO's estimators are unbiased: their means over many samples reach log p(x) too
    for kl in ("analytic", "mc"):
        value = per_example_elbo(model, params, x[:4], np.random.default_rng(3), n_samples=20000, kl=kl)
        np.testing.assert_allclose(value, exact[:4], atol=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("inference", INFERENCE)
def test_importance_sampling_of_a_hierarchy_converges_from_a_poor_proposal(inference):
    model, params, x, exact = linear_gaussian_hierarchy(inference, seed=4, points=20)
    for name in ("enc.b0", "enc2.b0"):
        params[name][:model.sizes[0 if name == "enc.b0" else 1]] += 0.3  # shift the posterior means
    errors = [np.mean(np.abs(importance_sampling(model, params, x, k, k,
                                                 progress=False)["log_likelihood"] - exact)) for k in (1, 30, 20000)]
    assert errors[2] < 0.02 and errors[2] < errors[1] < errors[0], errors


@pytest.mark.slow
@pytest.mark.parametrize("inference", INFERENCE)
def test_analytic_and_mc_elbo_agree_in_expectation(inference):
    """The analytic terms (closed-form top KL; closed-form lower KL given z2 top-down, closed-form
    entropy bottom-up) estimate the same ELBO as the sampled log-ratios, for a nonlinear model: their
    difference on the same noise has mean zero (within 4 standard errors, which are small)."""
    rng = np.random.default_rng(11)
    model = VAE(6, [4, 3], [5], "tanh", posterior=["chain", "ar1"], dtype=np.float64, inference=inference)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in model.new_params(rng).views.items()}
    # scales as a trained model's, so the sampled log-ratios' variance leaves the test its power:
    params["enc.b1"][4:8] += 1.5  # q(z1|.) chain factor's diagonal: sd about 0.6
    params["enc2.b1"][3] -= 1.0   # q(z2|x) AR(1) variance about 0.3
    params["dec2.b1"][4:] += 1.0  # p(z1|z2) sd about 1.3
    n = 200000
    x = np.repeat((rng.random((1, 6)) < 0.5).astype(np.float64), n, axis=0)  # one sample per row
    eps = rng.standard_normal((1, n, model.noise_size))
    diff = elbo(model, params, x, eps, "analytic") - elbo(model, params, x, eps, "mc")
    se = diff.std() / np.sqrt(n)
    assert se < 0.01 and abs(diff.mean()) < 4 * se, (diff.mean(), se)
    rec, kls, qs, zs = layer_terms(model, params, x[:2], eps[:, :2].repeat(3, axis=0))
    assert rec.shape == (3, 2) and [k.shape for k in kls] == [(2,), (2,)]
    assert [z.shape for z in zs] == [(3, 2, 4), (3, 2, 3)] and qs[1].mu.shape[-1] == 3


STRUCTURED = [("chain", "grid"), ("ar1", "rank1"), ("extgrid", "diagonal"), ("grid", "chain")]


@pytest.mark.parametrize("inference", INFERENCE)
@given(seed=st.integers(0, 2**32 - 1), families=st.sampled_from(STRUCTURED),
       kl=st.sampled_from(["analytic", "mc"]), samples=st.integers(1, 3))
def test_hierarchical_elbo_gradient(inference, seed, families, kl, samples):
    rng = np.random.default_rng(seed)
    grids = [{"grid_shape": (2, 3)} if f == "extgrid" else {} for f in families]
    model = VAE(5, [6, 4], [[3], [4, 2]], "tanh", posterior=list(families), dtype=np.float64,
                posterior_options=grids, inference=inference)
    views = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in model.new_params(rng).views.items()}
    x = rng.random((3, 5))
    eps = rng.standard_normal((samples, 3, model.noise_size))
    check_vjp(lambda p: elbo(model, p, x, eps, kl), [views], seed=seed, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("inference", INFERENCE)
@given(seed=st.integers(0, 2**32 - 1), families=st.sampled_from(STRUCTURED), k=st.integers(1, 4))
def test_hierarchical_iwae_bound_gradient(inference, seed, families, k):
    rng = np.random.default_rng(seed)
    grids = [{"grid_shape": (2, 3)} if f == "extgrid" else {} for f in families]
    model = VAE(5, [6, 4], [3], "elu", posterior=list(families), dtype=np.float64, posterior_options=grids,
                inference=inference)
    views = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in model.new_params(rng).views.items()}
    x = rng.random((3, 5))
    eps = rng.standard_normal((k, 3, model.noise_size))
    check_vjp(lambda p: iwae_bound(model, p, x, eps), [views], seed=seed, rtol=1e-4, atol=1e-7)


def test_three_layers_and_the_iwae_papers_architecture():
    model = VAE(784, [100, 50], [[200, 200], [100, 100]], "tanh", posterior="chain")
    shapes = model.param_shapes()
    assert shapes["enc.W2"] == (200, 300) and shapes["enc2.W0"] == (100, 100) and shapes["enc2.W2"] == (100, 150)
    assert shapes["dec2.W0"] == (50, 100) and shapes["dec2.W2"] == (100, 200) and shapes["dec.W0"] == (100, 200)
    assert model.noise_size == 150 and model.sizes[0] == 100 and [l.size for l in model.layers] == [100, 50]
    rng = np.random.default_rng(0)
    deep = VAE(8, [5, 4, 3], [6], "tanh", posterior=["diagonal", "grid", "chain"], dtype=np.float64)
    params = deep.new_params(rng).views
    x = (rng.random((2, 8)) < 0.5).astype(np.float64)
    eps = rng.standard_normal((3, 2, 12))
    rec, kls, qs, zs = layer_terms(deep, params, x, eps)
    assert len(kls) == 3 and all(np.isfinite(k).all() for k in kls)
    assert [z.shape for z in deep.prior_sample(params, eps[0])] == [(2, 5), (2, 4), (2, 3)]
    qs, zs = deep.infer(params, x)  # the mean pass
    assert all(np.array_equal(q.mu, z) for q, z in zip(qs, zs)) and zs[2].shape == (2, 3)


def test_one_layer_is_the_model_it_always_was():
    """A one-layer model has the parameters, names and order it always had, in either inference order
    and whether its lists are given as lists or not."""
    a = VAE(10, 4, [7, 5], "elu", posterior="chain")
    b = VAE(10, [4], [[7, 5]], "elu", posterior=["chain"], inference="top-down")
    assert list(a.param_shapes()) == ["enc.W0", "enc.b0", "enc.W1", "enc.b1", "enc.W2", "enc.b2",
                                      "dec.W0", "dec.b0", "dec.W1", "dec.b1", "dec.W2", "dec.b2"]
    assert a.param_shapes() == b.param_shapes() and a.hidden == b.hidden == ((7, 5),)
    pa, pb = a.new_params(np.random.default_rng(0)), b.new_params(np.random.default_rng(0))
    np.testing.assert_array_equal(pa.flat, pb.flat)
    x = np.random.default_rng(1).random((3, 10)).astype(np.float32)
    eps = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(elbo(a, pa.views, x, eps), elbo(b, pb.views, x, eps))


@pytest.mark.parametrize("kwargs, message", [
    (dict(latent=[4, 3], hidden=[5], posterior=["chain", "grid", "ar1"]), "posterior: expected one value"),
    (dict(latent=[4, 3], hidden=[[5], [5], [5]]), "hidden: expected one value"),
    (dict(latent=[4, 3], hidden=[[5], 5]), "hidden mixes widths and lists of widths"),
    (dict(latent=[4, 7], hidden=[5], posterior=["chain", "grid"]), "stochastic layer 2 .grid, 7 units.: latent dimension 7"),
    (dict(latent=[4, 0], hidden=[5]), "must be positive"),
    (dict(latent=[4, 3], hidden=[5], inference="sideways"), "unknown inference order 'sideways'"),
])
def test_bad_hierarchies_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(6, **kwargs)


def test_hidden_widths_are_one_tuple_per_layer():
    """Either form of ``hidden`` becomes a tuple of one tuple of widths per layer, once (layer_widths)."""
    assert layer_widths([7, 5], 2) == ((7, 5), (7, 5)) and layer_widths([7, 5]) == ((7, 5),)
    assert layer_widths([[7], (5, 3)]) == layer_widths(((7,), [5, 3]), 2) == ((7,), (5, 3))
    assert layer_widths([], 2) == ((), ())  # no hidden layer in either network
    assert VAE(6, [4, 3], [5]).hidden == ((5,), (5,)) and VAE(6, [4, 3], [[5], [2, 2]]).hidden == ((5,), (2, 2))
    assert [layer.encoder.sizes for layer in VAE(6, [4, 3], [[5], [2, 2]]).layers] == [[6, 5, 8], [4, 2, 2, 6]]
