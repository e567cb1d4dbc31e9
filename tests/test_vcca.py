"""Deep variational CCA (--task vcca): noisy MNIST's two views against scipy's rotation and their recipe,
the bound against a dense NumPy reference for VCCA and VCCA-private, its gradient against finite
differences, the linear SVM's measurement, a run from the command line that resumes to the same numbers,
and the refusals."""

import numpy as np
import pytest
import scipy.ndimage
from hypothesis import given, settings, strategies as st

from gvae.cli import main
from gvae.io.noisy_mnist import noisy_mnist, rotate, two_views
from gvae.models.vcca.model import VCCA, vcca_loss
from gvae.training import TrainConfig
from gvae.training.runs import open_run
from gvae.models.vcca.svm import linear_svm_error, pairwise_svm_error
from tests.gradcheck import check_vjp
from tests.helpers import assert_eval_estimates, fake_splits, trained_straight_and_resumed


@settings(max_examples=20, deadline=None)
@given(angle=st.floats(-np.pi / 4, np.pi / 4), seed=st.integers(0, 2 ** 16))
def test_rotate_is_scipys_bilinear_rotation_with_zeros_outside(angle, seed):
    image = np.random.default_rng(seed).random((28, 28)).astype(np.float32)
    ref = scipy.ndimage.rotate(image.astype(np.float64), -np.degrees(angle), reshape=False, order=1,
                               mode="grid-constant", cval=0.0)
    np.testing.assert_allclose(rotate(image.reshape(1, 784), np.array([angle]))[0].reshape(28, 28), ref, atol=2e-6)


def test_rotating_by_zero_is_the_identity_and_a_quarter_turn_moves_rows_into_columns():
    image = np.random.default_rng(0).random((1, 784)).astype(np.float32)
    np.testing.assert_array_equal(rotate(image, np.zeros(1)), image)
    turned = rotate(image, np.array([np.pi / 2]))[0].reshape(28, 28)
    np.testing.assert_allclose(turned, np.rot90(image.reshape(28, 28), k=-1), atol=1e-5)


def test_the_two_views_follow_the_recipe_and_are_reproducible():
    data = fake_splits({"train": 200, "valid": 50, "test": 60}, seed=1)
    views = noisy_mnist(data, seed=3)
    assert noisy_mnist(data, seed=3)["train"][0].tobytes() == views["train"][0].tobytes()
    assert noisy_mnist(data, seed=4)["train"][1].tobytes() != views["train"][1].tobytes()
    # A split's views do not depend on the other splits.
    other = noisy_mnist({**data, "train": fake_splits({"train": 20}, seed=9)["train"]}, seed=3)
    assert other["test"][1].tobytes() == views["test"][1].tobytes()
    alone = noisy_mnist({"test": data["test"]}, seed=3, splits=("test",))  # what gvae eval builds
    assert list(alone) == ["test"] and all(a.tobytes() == b.tobytes() for a, b in zip(alone["test"], views["test"]))
    x, y = data["train"]
    v1, v2, labels = views["train"]
    assert v1.dtype == v2.dtype == np.float32 and v1.shape == v2.shape == x.shape
    np.testing.assert_array_equal(labels, y)
    assert v1.min() >= 0 and v1.max() <= 1 + 1e-6 and v2.min() >= 0 and v2.max() <= 1
    # View 2 is an image of the same class plus noise in [0, 1], clipped: redraw it with the same generator.
    rng = np.random.default_rng(7)
    a1, a2 = two_views(x, y, rng)
    rng = np.random.default_rng(7)
    angles = rng.uniform(-np.pi / 4, np.pi / 4, len(x))
    np.testing.assert_array_equal(a1, rotate(x, angles))
    for i in range(len(x)):  # some image of the class, under the noise
        below = np.all(a2[i][None, :] >= x[y == y[i]] - 1e-7, axis=1)
        assert below.any()


def test_noisy_mnist_refuses_splits_without_labels_and_images_of_another_size():
    data = fake_splits()
    with pytest.raises(ValueError, match="the valid split has no labels"):
        noisy_mnist({**data, "valid": (data["valid"][0], None)})
    with pytest.raises(ValueError, match=r"28 x 28 images, \(N, 784\); got shape \(5, 36\)"):
        two_views(np.zeros((5, 36)), np.zeros(5, int), np.random.default_rng(0))


def _tiny(private, posterior="diagonal", seed=0, n=7, latent=3, **options):
    rng = np.random.default_rng(seed)
    model = VCCA(6, 5, latent, (4,), "elu", posterior, private=private, dtype=np.float64, **options)
    params = model.new_params(rng).views
    x1, x2 = rng.random((n, 6)), rng.random((n, 5))
    eps = rng.standard_normal((2, n, model.noise_size))
    return model, params, x1, x2, eps


def _mlp(params, prefix, x, layers):
    for i in range(layers):
        x = x @ params[f"{prefix}W{i}"] + params[f"{prefix}b{i}"]
        if i < layers - 1:
            x = np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    return x


def _bernoulli(logits, x):
    return (x * logits - np.logaddexp(0, logits)).sum(-1)


def _kl(mu, sigma):
    """KL(N(mu, diag sigma^2) || N(0, I)) over the last axis."""
    return 0.5 * (sigma ** 2 + mu ** 2 - 1 - 2 * np.log(sigma)).sum(-1)


def _masked_net(p, masks, prefix, x):
    """A network of one ELU hidden layer written out, its hidden units times their dropout mask."""
    h = x @ p[f"{prefix}W0"] + p[f"{prefix}b0"]
    h = np.where(h > 0, h, np.expm1(np.minimum(h, 0))) * masks[prefix][0]
    return h @ p[f"{prefix}W1"] + p[f"{prefix}b1"]


def _masked_code(p, masks, prefix, x, e, size, floor):
    """(mu, sigma, mu + sigma e) of a diagonal code whose encoder is :func:`_masked_net`."""
    head = _masked_net(p, masks, prefix, x)
    mu, sigma = head[..., :size], np.logaddexp(0, head[..., size:]) + floor
    return mu, sigma, mu + sigma * e


@pytest.mark.parametrize("private", [0, 2])
def test_the_bound_is_the_dense_reference(private):
    """Diagonal Gaussians written out: rec = mean_s [log p(x1|z[, h1]) + log p(x2|z[, h2])], the rate the sum
    of the codes' closed-form KL terms; the loss weighs the rate by kl_weight."""
    model, params, x1, x2, eps = _tiny(private)
    p = {k: np.asarray(v) for k, v in params.items()}

    def code(prefix, x, e, size):
        head = _mlp(p, prefix, x, 2)
        mu, sigma = head[:, :size], np.logaddexp(0, head[:, size:]) + model.family.floor
        return mu + sigma * e, 0.5 * (sigma ** 2 + mu ** 2 - 1 - 2 * np.log(sigma)).sum(-1)

    z, rate = code("enc.", x1, eps[..., :3], 3)
    shared_rate = rate
    codes = [z, z]
    for k, x in enumerate((x1, x2)[:2 if private else 0]):
        h, kl = code(f"priv{k + 1}.", x, eps[..., 3 + k * private:3 + (k + 1) * private], private)
        codes[k] = np.concatenate([z, h], axis=-1)
        rate = rate + kl
    rec = (_bernoulli(_mlp(p, "dec1.", codes[0], 2), x1) + _bernoulli(_mlp(p, "dec2.", codes[1], 2), x2)).mean(0)
    got_rec, got_rate = model.terms(params, x1, x2, eps)
    np.testing.assert_allclose(got_rec, rec, rtol=1e-10)
    np.testing.assert_allclose(got_rate, rate, rtol=1e-10)
    loss, (bound, mean_rec, mean_rate) = vcca_loss(params, model, x1, x2, eps, kl_weight=0.3)
    assert loss == pytest.approx(0.3 * rate.mean() - rec.mean(), rel=1e-10)
    assert bound == pytest.approx((rec - rate).mean(), rel=1e-10)
    # view 2's term tempered by W in the loss alone; the reported bound stays the paper's
    rec2 = _bernoulli(_mlp(p, "dec2.", codes[1], 2), x2).mean(0)
    loss, (bound_w, _, _) = vcca_loss(params, model, x1, x2, eps, kl_weight=0.3, view_weight=7.0, private_weight=4.0)
    private_rate = rate - shared_rate
    assert loss == pytest.approx(0.3 * (shared_rate.mean() + 4.0 * private_rate.mean()) - (rec - rec2).mean()
                                 - 7.0 * rec2.mean(), rel=1e-10)
    assert bound_w == pytest.approx(bound, rel=1e-12)
    if private:  # one weight per view's private code
        rates = [code(f"priv{k + 1}.", x, eps[..., 3 + k * private:3 + (k + 1) * private], private)[1]
                 for k, x in enumerate((x1, x2))]
        loss, (bound_v, _, _) = vcca_loss(params, model, x1, x2, eps, kl_weight=0.3, view_weight=7.0,
                                          private_weight=(0.5, 9.0))
        assert loss == pytest.approx(0.3 * (shared_rate.mean() + 0.5 * rates[0].mean() + 9.0 * rates[1].mean())
                                     - (rec - rec2).mean() - 7.0 * rec2.mean(), rel=1e-10)
        assert bound_v == pytest.approx(bound, rel=1e-12)
        equal = vcca_loss(params, model, x1, x2, eps, kl_weight=0.3, private_weight=(4.0, 4.0))[0]
        assert equal == vcca_loss(params, model, x1, x2, eps, kl_weight=0.3, private_weight=4.0)[0]
    with pytest.raises(ValueError, match="one weight or one per view"):
        vcca_loss(params, model, x1, x2, eps, private_weight=(1.0, 2.0, 3.0))


@pytest.mark.parametrize("private,likelihood", [(0, ("bernoulli", "diagonal-gaussian")), (2, "diagonal-gaussian")])
def test_a_diagonal_gaussian_view_is_its_dense_reference(private, likelihood):
    """A diagonal Gaussian view written out: its decoder's outputs are the means, then the variances' raw values
    (variance = softplus + 1e-4), and log p(x|.) = sum_j log N(x_j; mean_j, var_j); the loss tempers it by W
    as it does a Bernoulli view; the parameter layout adds no parameter, only the decoder's wider output."""
    model, params, x1, x2, eps = _tiny(private, likelihood=likelihood)
    assert model.likelihoods == ((likelihood,) * 2 if isinstance(likelihood, str) else likelihood)
    p = {k: np.asarray(v) for k, v in params.items()}
    assert p["dec2.W1"].shape == (4, 10) and p["dec1.W1"].shape == (4, 12 if isinstance(likelihood, str) else 6)
    assert not any(name.startswith("noise") for name in p)

    def code(prefix, x, e, size):
        head = _mlp(p, prefix, x, 2)
        mu, sigma = head[:, :size], np.logaddexp(0, head[:, size:]) + model.family.floor
        return mu + sigma * e, 0.5 * (sigma ** 2 + mu ** 2 - 1 - 2 * np.log(sigma)).sum(-1)

    def gaussian(out, x):
        n = x.shape[-1]
        mean, var = out[..., :n], np.logaddexp(0, out[..., n:]) + 1e-4
        return (-0.5 * (x - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)).sum(-1)

    z, rate = code("enc.", x1, eps[..., :3], 3)
    codes = [z, z]
    for k, x in enumerate((x1, x2)[:2 if private else 0]):
        h, kl = code(f"priv{k + 1}.", x, eps[..., 3 + k * private:3 + (k + 1) * private], private)
        codes[k] = np.concatenate([z, h], axis=-1)
        rate = rate + kl
    view1 = _bernoulli if model.likelihoods[0] == "bernoulli" else gaussian
    rec1, rec2 = view1(_mlp(p, "dec1.", codes[0], 2), x1).mean(0), gaussian(_mlp(p, "dec2.", codes[1], 2), x2).mean(0)
    got_rec, got_rate = model.terms(params, x1, x2, eps)
    np.testing.assert_allclose(got_rec, rec1 + rec2, rtol=1e-10)
    np.testing.assert_allclose(got_rate, rate, rtol=1e-10)
    loss, (bound, _, _) = vcca_loss(params, model, x1, x2, eps, kl_weight=0.3, view_weight=7.0)
    assert loss == pytest.approx(0.3 * rate.mean() - rec1.mean() - 7.0 * rec2.mean(), rel=1e-10)
    assert bound == pytest.approx((rec1 + rec2 - rate).mean(), rel=1e-10)


def test_dropout_multiplies_every_hidden_layer_by_its_mask_and_keeps_the_mean():
    """The bound with dropout masks is the dense reference with each hidden layer's activations multiplied by
    its mask (the decoders' masks shared by a pair's samples); the masks are 0 or 1 / (1 - rate), zero at
    the rate's frequency, so the activations' expectation is unchanged; rate 0 masks nothing."""
    model, params, x1, x2, eps = _tiny(2, seed=4)
    masks = model.dropout_masks(np.random.default_rng(5), len(x1), 0.5)
    assert set(masks) == {"enc.", "dec1.", "dec2.", "priv1.", "priv2."}
    assert all(len(m) == 1 and m[0].shape == (len(x1), 4) and set(np.unique(m[0])) <= {0.0, 2.0}
               for m in masks.values())
    p = {k: np.asarray(v) for k, v in params.items()}

    def net(prefix, x):
        return _masked_net(p, masks, prefix, x)

    def code(prefix, x, e, size):
        mu, sigma, draw = _masked_code(p, masks, prefix, x, e, size, model.family.floor)
        return draw, _kl(mu, sigma)

    z, rate = code("enc.", x1, eps[..., :3], 3)
    codes = []
    for k, x in enumerate((x1, x2)):
        h, kl = code(f"priv{k + 1}.", x, eps[..., 3 + 2 * k:5 + 2 * k], 2)
        codes.append(np.concatenate([z, h], axis=-1))
        rate = rate + kl
    rec = (_bernoulli(net("dec1.", codes[0]), x1) + _bernoulli(net("dec2.", codes[1]), x2)).mean(0)
    loss, _ = vcca_loss(params, model, x1, x2, eps, masks=masks)
    assert loss == pytest.approx((rate - rec).mean(), rel=1e-10)
    big = model.dropout_masks(np.random.default_rng(6), 20_000, 0.3)["enc."][0]
    assert (big == 0).mean() == pytest.approx(0.3, abs=0.01) and big.mean() == pytest.approx(1, abs=0.01)
    assert vcca_loss(params, model, x1, x2, eps, masks=None)[0] == vcca_loss(params, model, x1, x2, eps)[0]


def test_input_dropout_masks_what_the_encoders_read_not_what_the_decoders_reconstruct():
    model, params, x1, x2, eps = _tiny(2, seed=4)
    masks = model.dropout_masks(np.random.default_rng(5), len(x1), 0.0, 0.5)
    assert set(masks) == {"input"}
    assert [m.shape for m in masks["input"]] == [x1.shape, x2.shape]
    assert all(set(np.unique(m)) <= {0.0, 2.0} for m in masks["input"])
    m1, m2 = masks["input"]
    dropped, seen = model.view_terms(params, x1, x2, eps, masks=masks), model.view_terms(params, x1 * m1, x2 * m2, eps)
    np.testing.assert_array_equal(dropped[2], seen[2])  # the codes are those of the masked views
    np.testing.assert_array_equal(dropped[3][0], seen[3][0])
    np.testing.assert_array_equal(dropped[3][1], seen[3][1])
    # ... and what is reconstructed is the whole views: their terms differ from the masked views' own
    assert not np.allclose(dropped[0], seen[0]) and not np.allclose(dropped[1], seen[1])
    ones = {"input": (np.ones_like(x1), np.ones_like(x2))}
    assert vcca_loss(params, model, x1, x2, eps, masks=ones)[0] == vcca_loss(params, model, x1, x2, eps)[0]
    big = model.dropout_masks(np.random.default_rng(6), 20_000, 0.0, 0.3)["input"][0]
    assert (big == 0).mean() == pytest.approx(0.3, abs=0.01) and big.mean() == pytest.approx(1, abs=0.01)
    both = model.dropout_masks(np.random.default_rng(6), len(x1), 0.2, 0.3)
    assert set(both) == {"enc.", "dec1.", "dec2.", "priv1.", "priv2.", "input"}
    hidden = model.dropout_masks(np.random.default_rng(6), len(x1), 0.2)  # drawn first: the same masks
    assert all(np.array_equal(a, b) for k in hidden for a, b in zip(hidden[k], both[k]))


def test_own_draws_and_code_dropout_are_their_dense_reference():
    """decoder_draws "own" with every dropout mask (Wang et al.'s training pass) written out: decoder 2 reads
    its own draws of z from the noise's last columns, each draw with its own masks on the decoders' hidden
    units and on the codes entering them (the two decoders' code masks apart), the encoders' inputs masked
    as before; rec the mean over the S draws of each view's term, the rate closed form, or by Monte Carlo
    the mean over both decoders' draws."""
    model, params, x1, x2, _ = _tiny(2, seed=8, decoder_draws="own")
    assert model.noise_size == 3 + 2 * 2 + 3 and _tiny(2)[0].noise_size == 3 + 2 * 2
    eps = np.random.default_rng(9).standard_normal((4, len(x1), model.noise_size))
    masks = model.dropout_masks(np.random.default_rng(5), len(x1), 0.3, 0.4, 0.5, samples=4)
    assert set(masks) == {"enc.", "dec1.", "dec2.", "priv1.", "priv2.", "input", "codes"}
    assert masks["enc."][0].shape == (len(x1), 4) and masks["dec1."][0].shape == (4, len(x1), 4)
    assert [m.shape for m in masks["codes"]] == [(4, len(x1), 5)] * 2 and set(np.unique(masks["codes"][0])) == {0, 2}
    assert not np.array_equal(masks["codes"][0], masks["codes"][1])
    p = {k: np.asarray(v) for k, v in params.items()}
    floor = model.family.floor
    seen = (x1 * masks["input"][0], x2 * masks["input"][1])
    mu, sigma, z = _masked_code(p, masks, "enc.", seen[0], eps[..., :3], 3, floor)
    z2 = mu + sigma * eps[..., 7:]
    rate = _kl(mu, sigma)
    recs = []
    for k, (shared, x) in enumerate(((z, x1), (z2, x2))):
        m, s, h = _masked_code(p, masks, f"priv{k + 1}.", seen[k], eps[..., 3 + 2 * k:5 + 2 * k], 2, floor)
        rate = rate + _kl(m, s)
        code = np.concatenate([shared, h], -1) * masks["codes"][k]
        recs.append(_bernoulli(_masked_net(p, masks, f"dec{k + 1}.", code), x).mean(0))
    rec1, rec2, got_rate, private_rates = model.view_terms(params, x1, x2, eps, masks=masks)
    np.testing.assert_allclose(rec1, recs[0], rtol=1e-10)
    np.testing.assert_allclose(rec2, recs[1], rtol=1e-10)
    np.testing.assert_allclose(got_rate + sum(private_rates), rate, rtol=1e-10)

    def mc(zs):  # log q(z|x1) - log N(z; 0, I), averaged over the draws
        return np.mean([(-0.5 * ((d - mu) / sigma) ** 2 - np.log(sigma) + 0.5 * d ** 2).sum(-1).mean(0) for d in zs], 0)
    np.testing.assert_allclose(model.view_terms(params, x1, x2, eps, "mc", masks)[2], mc([z, z2]), rtol=1e-10)
    # The importance weights of gvae eval decode one joint draw: decoder 2's own columns are not read.
    np.testing.assert_array_equal(model.log_weights(params, x1, x2, eps),
                                  model.log_weights(params, x1, x2, np.concatenate([eps[..., :7], 0 * z2], -1)))
    check_vjp(lambda p_: vcca_loss(p_, model, x1, x2, eps, "mc", kl_weight=0.7, masks=masks)[0], [params])


@pytest.mark.parametrize("mean", ["linear", "sigmoid"])
def test_a_pixel_gaussian_view_is_scipys_normal_with_a_learned_variance_per_pixel(mean):
    """pixel-gaussian: log p(x2|.) = sum_j log N(x2_j; m_j, 1e-6 + exp(v_j)), v (n_in2,) one parameter per
    pixel after the networks', 0 to start; the decoder outputs the means alone: m = dec2, or with the sigmoid
    mean (Wang et al.'s decoders end in a sigmoid) m = 1 / (1 + exp(-dec2))."""
    from scipy.special import expit
    from scipy.stats import norm
    model, params, x1, x2, eps = _tiny(0, likelihood=("bernoulli", "pixel-gaussian"), view_mean=("linear", mean))
    assert list(model.param_shapes())[-1] == "noise2.logvar" and model.param_shapes()["noise2.logvar"] == (5,)
    assert params["dec2.W1"].shape == (4, 5) and not np.any(params["noise2.logvar"])
    # the memory check counts the residual, and the sigmoid's mean where there is one
    assert model.noises[0].sizes == ((5, 5) if mean == "sigmoid" else (5,))
    params["noise2.logvar"][...] = np.log([1e-5, 0.3, 1.0, 4.0, 1e-7])
    out = 3 * np.random.default_rng(3).standard_normal((2, len(x2), 5))
    centre = expit(out) if mean == "sigmoid" else out
    want = norm.logpdf(x2, centre, np.sqrt(1e-6 + np.exp(params["noise2.logvar"]))).sum(-1)
    np.testing.assert_allclose(model.view_log_lik(params, 1, out, x2), want, rtol=1e-10)
    check_vjp(lambda p_: vcca_loss(p_, model, x1, x2, eps, view_weight=3.0)[0], [params])


@pytest.mark.parametrize("options,message", [
    (dict(view_mean="sigmoid"), "a sigmoid mean is a pixel-gaussian view's"),
    (dict(likelihood=("pixel-gaussian", "bernoulli"), view_mean=("linear", "sigmoid")), "a sigmoid mean is a"),
    (dict(view_mean=("linear",)), "a VCCA view's mean is one of"),
    (dict(view_mean="softplus"), "a VCCA view's mean is one of"),
])
def test_a_view_mean_that_does_not_apply_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        VCCA(6, 5, 3, (4,), **options)


def test_the_uniform_005_scheme_draws_every_weight_and_bias_of_every_network_in_its_interval():
    model = VCCA(784, 784, 40, (1024, 1024, 1024), "relu", private=30, init="uniform-0.05",
                 likelihood=("bernoulli", "pixel-gaussian"))
    params = model.new_params(np.random.default_rng(0)).views
    for name, value in params.items():
        if name == "noise2.logvar":
            assert not np.any(value)
            continue
        assert np.abs(value).max() <= 0.05 and (value.size < 1000 or np.abs(value).max() > 0.049), name
        assert abs(value.mean()) < 0.05 / np.sqrt(value.size) * 5, name  # centred: U(-0.05, 0.05)


@pytest.mark.parametrize("private,posterior,kl,options", [
    (0, "diagonal", "analytic", {}), (0, "chain", "mc", {}), (2, "grid", "analytic", {}),
    (3, "rank1", "analytic", {}), (0, "full", "mc", {"likelihood": "gaussian", "shared_from": "both"}),
    (2, "chain", "analytic", {"likelihood": "gaussian"}),
    (1, "diagonal", "analytic", {"likelihood": ("bernoulli", "diagonal-gaussian")}),
    (0, "grid", "mc", {"likelihood": ("diagonal-gaussian", "gaussian")}),
    (2, "diagonal", "analytic", {"likelihood": "pixel-gaussian", "view_mean": ("linear", "sigmoid")})])
def test_the_loss_gradient_against_finite_differences(private, posterior, kl, options):
    model, params, x1, x2, eps = _tiny(private, posterior, seed=2, latent=4, **options)
    for noise in model.noises:  # factors away from the identity they start at
        params[noise.name] += 0.3 * np.random.default_rng(len(noise.name)).standard_normal(params[noise.name].shape)
    masks = model.dropout_masks(np.random.default_rng(3), len(x1), 0.4) if private else None
    weights = (2.0, 5.0) if private else 2.0
    check_vjp(lambda p_: vcca_loss(p_, model, x1, x2, eps, kl, kl_weight=0.7, view_weight=3.0,
                                   private_weight=weights, masks=masks)[0], [params])


def test_the_linear_svm_reads_the_class_from_separable_codes_and_tunes_c_on_validation():
    rng = np.random.default_rng(0)

    def codes(n, noise):
        y = rng.integers(0, 3, n)
        return np.eye(3)[y] * 4 + noise * rng.standard_normal((n, 3)), y
    result = linear_svm_error(codes(300, 0.3), codes(100, 0.3), codes(100, 0.3))
    assert result["svm_test_error"] == 0 and result["svm_valid_error"] == 0 and result["svm_c"] == 0.01
    chance = linear_svm_error(codes(300, 0.0)[0:1] + (rng.integers(0, 3, 300),), codes(100, 0.0)[0:1] +
                              (rng.integers(0, 3, 100),), codes(300, 0.0)[0:1] + (rng.integers(0, 3, 300),))
    assert chance["svm_test_error"] > 0.5


def test_the_one_vs_one_svm_is_wang_et_als_svc_on_raw_codes_with_c_chosen_on_validation():
    """pairwise_svm_error: scikit-learn's SVC(kernel="linear") fitted on the raw training codes for each C,
    the C of the lowest validation error (the first of equals) tested; written out here with the SVC
    itself, on overlapping classes of unequal scales (where standardising the codes, or choosing C on the
    test set, would give other numbers)."""
    from sklearn.svm import SVC
    rng = np.random.default_rng(1)

    def codes(n):
        y = rng.integers(0, 3, n)
        return np.stack([y + 0.9 * rng.standard_normal(n), 40 * (y % 2) + 30 * rng.standard_normal(n)], 1), y
    train, valid, test = codes(300), codes(150), codes(150)
    cs = (0.001, 0.1, 10.0)
    errors = []
    for c in cs:
        svm = SVC(C=c, kernel="linear").fit(*train)
        errors.append(tuple(float((svm.predict(x) != y).mean()) for x, y in (valid, test)))
    best = min(range(len(cs)), key=lambda k: (errors[k][0], k))
    got = pairwise_svm_error(train, valid, test, cs=cs)
    assert got == {"svm_ovo_test_error": errors[best][1], "svm_ovo_valid_error": errors[best][0], "svm_ovo_c": cs[best]}
    assert len({e[0] for e in errors}) > 1 and 0 < errors[best][1] < 0.6  # C matters here; the task is not trivial


def test_a_vcca_run_from_the_command_line_resumes_to_the_same_numbers(tmp_path, capsys):
    _, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "vcca", "--private", "2", "--latent", "4", "--hidden", "16", "--posterior", "chain",
                   "--batch-size", "40", "--view-weight", "4", "--dropout", "0.2", "--private-weight2", "3"])
    assert meta["config"]["private"] == 2 and meta["config"]["view_weight"] == 4 and meta["config"]["dropout"] == 0.2
    assert meta["config"]["private_weight2"] == 3
    assert summary["task"] == "vcca" and summary["private"] == 2 and 0 <= summary["svm_test_error"] <= 1
    assert summary["svm_c"] in (0.01, 0.1, 1.0, 10.0) and summary["test_elbo"] < 0
    assert summary["svm_ovo_c"] in (0.1, 1.0, 10.0) and 0 <= summary["svm_ovo_test_error"] <= 1
    assert {"priv1.W0", "priv2.W0", "dec2.W0"} <= set(meta["param_shapes"])
    assert_eval_estimates(tmp_path / "straight", data, capsys, "holds a VCCA (--task vcca)")
    # gvae eval's test pairs, built alone, are those of the run's own inputs.
    task = open_run(tmp_path / "straight", weighted=True).task
    loaded = dict(np.load(data))
    splits = {split: (loaded[f"{split}_x"], loaded[f"{split}_y"]) for split in ("train", "valid", "test")}
    for got, want in zip(task.reading.test_inputs(splits), task.on_device(task.inputs(splits))["test"]):
        np.testing.assert_array_equal(got, want)


def test_a_vcca_run_with_a_diagonal_gaussian_view_2_resumes_to_the_same_numbers(tmp_path):
    _, summary, meta, _ = trained_straight_and_resumed(
        tmp_path, ["--task", "vcca", "--latent", "4", "--hidden", "16", "--batch-size", "40",
                   "--view2-likelihood", "diagonal-gaussian", "--samples", "2"])
    assert meta["config"]["view2_likelihood"] == "diagonal-gaussian"
    assert meta["param_shapes"]["dec2.W1"] == [16, 2 * 784] and meta["param_shapes"]["dec1.W1"] == [16, 784]
    assert summary["task"] == "vcca" and 0 <= summary["svm_test_error"] <= 1 and np.isfinite(summary["test_elbo"])


@pytest.mark.slow
def test_a_run_on_wang_et_als_protocol_resumes_and_fits_its_svm_on_every_training_code(tmp_path, monkeypatch):
    """Every flag of the authors' protocol in one run (docs/models/vcca.md) resumes to the same numbers, and the
    one-vs-one SVM is fitted on the codes of all the training pairs, tuned on the validation pairs and tested
    on the test pairs, their labels in order."""
    from gvae.models.vcca import task as vcca
    seen = []

    def recording(train, valid, test, **kw):
        seen.append([labels for _, labels in (train, valid, test)])
        return pairwise_svm_error(train, valid, test, **kw)
    monkeypatch.setattr(vcca, "pairwise_svm_error", recording)
    _, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "vcca", "--private", "2", "--latent", "4", "--hidden", "16", "16", "--activation", "relu",
                   "--init", "uniform-0.05", "--dropout", "0.2", "--input-dropout", "0.2", "--code-dropout", "0.2",
                   "--samples", "3", "--decoder-draws", "own", "--view2-likelihood", "pixel-gaussian",
                   "--view2-mean", "sigmoid", "--test-params", "last", "--batch-size", "40"])
    config = meta["config"]
    assert (config["code_dropout"], config["decoder_draws"], config["view2_likelihood"], config["view2_mean"],
            config["init"]) == (0.2, "own", "pixel-gaussian", "sigmoid", "uniform-0.05")
    assert meta["param_shapes"]["noise2.logvar"] == [784] and summary["tested_epoch"] == 3
    loaded = np.load(data)
    assert len(seen) == 3 and all(np.array_equal(got, loaded[f"{split}_y"])
                                  for labels in seen for got, split in zip(labels, ("train", "valid", "test")))
    assert 0 <= summary["svm_ovo_test_error"] <= 1


@pytest.mark.parametrize("settings,message", [
    (dict(latent=(4, 2)), "one shared code"),
    (dict(likelihood="gaussian"), "by --view2-likelihood's: leave --likelihood at the default"),
    (dict(iw_samples=5), "without --iw-samples"),
    (dict(private=-1), "private must lie in 0..10000"),
    (dict(view_weight=0.0), "view_weight must be a finite number > 0"),
    (dict(private_weight=3.0), "--private-weight weighs the private codes' KL terms: give --private P"),
    (dict(private_weight2=3.0), "--private-weight2 weighs view 2's private code's KL term: give --private P"),
    (dict(private=2, private_weight2=0.0), "private_weight2 must be a finite number > 0"),
    (dict(dropout=1.0), r"dropout must lie in \[0, 1\)"),
    (dict(input_dropout=-0.1), r"input_dropout must lie in \[0, 1\)"),
    (dict(code_dropout=1.0), r"code_dropout must lie in \[0, 1\)"),
    (dict(view2_mean="sigmoid"), "--view2-mean sigmoid is the mean of a pixel-gaussian view 2: give "
                                 "--view2-likelihood pixel-gaussian \\(not bernoulli\\)"),
    (dict(view2_mean="sigmoid", view2_likelihood="diagonal-gaussian"), "not diagonal-gaussian"),
    (dict(view2_mean="tanh"), r"view2_mean must be one of \['linear', 'sigmoid'\], got 'tanh'"),
    (dict(decoder_draws="both"), "decoder_draws must be one of"),
    (dict(view2_likelihood="poisson"), "view2_likelihood must be one of"),
])
def test_a_vcca_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(**{"task": "vcca", **settings})


@pytest.mark.parametrize("labels, limit, message", [
    ([3] * 60, [], "the 60 training images all have label 3"),
    ([1] * 59 + [2], ["--limit", "59"], "the 59 training images that --limit keeps all have label 1"),
])
def test_training_pairs_of_one_class_are_refused_before_training(tmp_path, capsys, labels, limit, message):
    """The test's SVM cannot be fitted on one class: the run is refused before it trains, not after."""
    splits = fake_splits({"train": 60, "valid": 20, "test": 20}, seed=2)
    splits["train"] = (splits["train"][0], np.array(labels))
    np.savez(tmp_path / "one.npz", **{f"{s}_{part}": splits[s][i] for s in splits for i, part in enumerate("xy")})
    run = tmp_path / "run"
    assert main(["train", "--task", "vcca", "--latent", "4", "--hidden", "16", "--epochs", "1", *limit,
                 "--data", str(tmp_path / "one.npz"), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "two or more classes" in err and not run.exists()


def test_private_codes_and_the_view_weight_belong_to_vcca_only():
    with pytest.raises(ValueError, match="private applies to --task vcca only"):
        TrainConfig.of(private=3)
    with pytest.raises(ValueError, match="view_weight applies to --task vcca only"):
        TrainConfig.of(view_weight=2.0)


def test_the_private_pictures_keep_the_shared_code_and_draw_the_private_ones(tmp_path, capsys):
    """examples/vcca_private_pictures.py: every column of a row decodes the mean of q(z|x1) with private codes
    h1, h2 drawn from the generator, one draw per column shared by the rows, written out in NumPy; and the
    first pair of each class is picked, a class without one refused by name."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "vcca_private_pictures", Path(__file__).resolve().parents[1] / "examples" / "vcca_private_pictures.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, params, x1, _, _ = _tiny(2)
    view1, view2 = example.private_draws(model, params, x1, 3, np.random.default_rng(4))
    assert view1.shape == (7, 3, 6) and view2.shape == (7, 3, 5)
    p = {k: np.asarray(v) for k, v in params.items()}
    z = _mlp(p, "enc.", x1, 2)[:, :3]
    h = np.random.default_rng(4).standard_normal((3, 2, 2))
    for c in range(3):
        for k, got in enumerate((view1, view2)):
            code = np.concatenate([z, np.tile(h[c, k], (7, 1))], axis=1)
            want = 1 / (1 + np.exp(-_mlp(p, f"dec{k + 1}.", code, 2)))
            np.testing.assert_allclose(got[:, c], want, rtol=1e-12)
    assert not np.allclose(view1[:, 0], view1[:, 1])  # the private code changes the picture
    np.testing.assert_array_equal(example.first_of_each_class([3, 1, 0, 1, 2], classes=4), [2, 1, 4, 0])
    with pytest.raises(ValueError, match=r"no pair of class \[2\]"):
        example.first_of_each_class([0, 1, 3, 1], classes=4)
    # A folder without a run: one line on stderr, exit 2
    assert example.main(example.parse_args([str(tmp_path / "none"), "--out", str(tmp_path / "p.png")])) == 2
    assert "no run folder" in capsys.readouterr().err
