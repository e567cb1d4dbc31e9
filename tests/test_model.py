"""The whole VAE loss against finite differences, the diagonal family, the optimiser and training."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from gvae import ops
from gvae.autodiff import value_and_grad
from gvae.model import VAE
from gvae.model.objectives import elbo, training_loss
from gvae.training.adam import Adam
from gvae.model.params import FlatParams
from gvae.model.posteriors import FAMILIES, get_family
from tests.gradcheck import check_vjp


@given(seed=st.integers(0, 2**32 - 1), activation=st.sampled_from(["elu", "tanh", "softplus", "relu"]),
       kl=st.sampled_from(["analytic", "mc"]), samples=st.integers(1, 3),
       hidden=st.lists(st.integers(1, 6), min_size=1, max_size=2))
def test_elbo_gradient_whole_model(seed, activation, kl, samples, hidden):
    rng = np.random.default_rng(seed)
    model = VAE(7, 3, hidden, activation, dtype=np.float64)
    params = model.new_params(rng)
    x = rng.random((4, 7))
    eps = rng.standard_normal((samples, 4, 3))
    # random biases too: a dead ReLU layer with zero bias would sit exactly on the kink
    views = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.views.items()}
    check_vjp(lambda p: elbo(model, p, x, eps, kl), [views], 0, seed=seed, rtol=1e-4, atol=1e-7)


def test_diagonal_family_against_dense_gaussian():
    from scipy.stats import multivariate_normal
    rng = np.random.default_rng(0)
    fam = get_family("diagonal")
    h = rng.standard_normal((5, 8))
    q = fam.split(h, 4)
    eps = rng.standard_normal((3, 5, 4))
    z = fam.sample(q, eps)
    lp = fam.log_prob(q, z)
    for b in range(5):
        cov = np.linalg.inv(fam.precision(q)[b])
        ref = multivariate_normal(q.mu[b], cov)
        np.testing.assert_allclose(lp[:, b], ref.logpdf(z[:, b]), rtol=1e-10)
        np.testing.assert_allclose(fam.entropy(q)[b], ref.entropy(), rtol=1e-10)
        kl_ref = 0.5 * (np.trace(cov) + q.mu[b] @ q.mu[b] - 4 - np.linalg.slogdet(cov)[1])
        np.testing.assert_allclose(fam.kl(q)[b], kl_ref, rtol=1e-10)


def test_mc_kl_converges_to_analytic():
    rng = np.random.default_rng(1)
    fam = get_family("diagonal")
    q = fam.split(rng.standard_normal((3, 6)), 3)
    z = fam.sample(q, rng.standard_normal((200000, 3, 3)))
    np.testing.assert_allclose(fam.kl_mc(q, z), fam.kl(q), rtol=0.02, atol=0.02)


def test_families_registry_and_errors():
    assert "diagonal" in FAMILIES
    with pytest.raises(ValueError, match="unknown posterior family 'nope'"):
        get_family("nope")
    with pytest.raises(ValueError, match="floor"):
        get_family("diagonal", floor=0.0)
    with pytest.raises(ValueError, match="unknown activation"):
        VAE(4, 2, [3], "swish")


def test_initialisation_schemes():
    """"uniform": W and b ~ U(+-1/sqrt(fan_in)) (torch.nn.Linear); "he": He normal before the ELU layers,
    Glorot uniform before the linear outputs, zero biases (the scheme runs written before "init" used)."""
    uniform = VAE(400, 8, [300, 200]).new_params(np.random.default_rng(0)).views
    he = VAE(400, 8, [300, 200], init="he").new_params(np.random.default_rng(0)).views
    for name, shape in VAE(400, 8, [300, 200]).param_shapes().items():
        if "W" not in name:
            continue
        (din, dout), bias = shape, name.replace("W", "b")
        bound = 1 / np.sqrt(din)
        w, b = np.abs(uniform[name]).max(), np.abs(uniform[bias]).max()
        assert 0.99 * bound < w <= bound and 0.5 * bound < b <= bound  # b has as few as 16 entries
        np.testing.assert_allclose(uniform[name].std(), bound / np.sqrt(3), rtol=0.05)
        assert not he[bias].any()
        if name in ("enc.W2", "dec.W2"):  # before the linear heads
            limit = np.sqrt(6 / (din + dout))
            assert np.abs(he[name]).max() <= limit and np.abs(he[name]).max() > 0.95 * limit
        else:
            np.testing.assert_allclose(he[name].std(), np.sqrt(2 / din), rtol=0.05)
    with pytest.raises(ValueError, match="unknown initialisation 'lecun'; expected one of"):
        VAE(4, 2, [3], init="lecun")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["diagonal", "chain", "extgrid", "rank1"])
def test_the_default_initialisation_starts_every_family_near_the_prior(name):
    """With "he", head outputs of O(1) made the off-diagonals of a chain's or grid's factor L as large as
    its diagonal, so L^-T multiplied them along the band: KLs of 1e4 nats and more at step 0 on MNIST-sized
    nets (docs/explanation/training_quality.md). The default keeps q(z|x) within a few nats of N(0, I)."""
    rng = np.random.default_rng(0)
    x = (rng.random((200, 784)) < 0.15).astype(np.float32)
    kl = {}
    for init in ("uniform", "he"):
        model = VAE(784, 16, [500, 500], posterior=name, init=init)
        kl[init] = model.layers[0].family.kl(model.encode(model.new_params(np.random.default_rng(1)).views, x))
    assert kl["uniform"].max() < 5
    if name in ("chain", "extgrid"):
        assert np.median(kl["he"]) > 50


def test_scale_floor_bounds_sigma():
    q = get_family("diagonal", floor=1e-3).split(np.full((1, 4), -1e4, np.float32), 2)
    assert (q.sigma >= 1e-3).all() and np.isfinite(q.sigma).all()


def test_flat_params_views_share_the_buffer():
    p = FlatParams({"a": (2, 3), "b": (4,)})
    p.views["a"][...] = 1
    assert p.flat[:6].tolist() == [1.0] * 6 and p.flat.dtype == np.float32
    other = p.unflatten(np.arange(10.0, dtype=np.float32))
    assert other["b"].tolist() == [6.0, 7.0, 8.0, 9.0] and other["a"].shape == (2, 3)
    assert p.on("cpu") is p
    with pytest.raises(ValueError, match=r"shape \(10,\) and dtype float32"):
        FlatParams(p.shapes, np.float32, np.zeros(9, np.float32))


def test_gradients_written_into_views_of_a_flat_buffer():
    p = FlatParams({"W": (3, 2), "b": (2,), "unused": (4,)}, np.float64)
    rng = np.random.default_rng(0)
    p.flat[...] = rng.standard_normal(p.size)
    x = rng.standard_normal((5, 3))
    grad = FlatParams(p.shapes, np.float64)
    grad.flat[...] = np.nan  # every entry must be written, the unused parameter's with zeros

    def loss(q):
        h = ops.dense(x, q["W"], q["b"], "tanh")
        return ops.sum(h * h) + ops.sum(q["b"] * q["W"][0])  # W and b reached twice: accumulated

    value, g = value_and_grad(loss, out=grad.views)(p.views)
    _, fresh = value_and_grad(loss)(p.views)
    assert g is grad.views
    for name in p.shapes:
        np.testing.assert_allclose(grad.views[name], fresh[name], rtol=1e-12)
    assert (grad.views["unused"] == 0).all()
    with pytest.raises(ValueError, match=r"out\['W'\] must be an array of shape \(3, 2\)"):
        value_and_grad(loss, out={**grad.views, "W": np.zeros((2, 3))})(p.views)


def test_adam_minimises_a_quadratic_and_clips():
    target = np.linspace(-1, 1, 10)
    p = FlatParams({"w": (10,)}, np.float64)
    grad = FlatParams(p.shapes, np.float64)
    opt = Adam(p.flat, lr=0.05, clip_norm=1.0)
    vg = value_and_grad(lambda q: ops.sum((q["w"] - target) ** 2), out=grad.views)
    for _ in range(800):
        vg(p.views)
        norm = opt.update(grad.flat)
    np.testing.assert_allclose(p.flat, target, atol=1e-3)
    assert norm < 1.0
    with pytest.raises(ValueError, match="learning rate"):
        Adam(p.flat, lr=0.0)


def test_loss_is_reproducible_and_float32():
    model = VAE(10, 2, [5], "elu")
    a, b = model.new_params(np.random.default_rng(3)), model.new_params(np.random.default_rng(3))
    np.testing.assert_array_equal(a.flat, b.flat)
    x = np.random.default_rng(0).random((4, 10)).astype(np.float32)
    eps = np.zeros((1, 4, 2), np.float32)
    (loss, _), g = value_and_grad(training_loss, has_aux=True)(a.views, model, x, eps)
    assert loss.dtype == np.float32 and all(v.dtype == np.float32 for v in g.values())


def test_the_vae_and_its_local_twin_provide_what_the_objectives_need():
    """gvae.model.interface.ObjectiveModel: the VAE (one layer and a hierarchy) and a LocalVAE provide it;
    the LocalVAE reads everything but its posterior pass from the model it wraps, never a copy."""
    from gvae.model.interface import ObjectiveModel
    from gvae.model.local import HEADS, LocalVAE, encoder_heads, with_heads
    one = VAE(16, 3, [8], "tanh", posterior="chain")
    two = VAE(16, [4, 2], [8], "tanh", posterior="chain")
    local = LocalVAE(one)
    for model in (one, two, local, LocalVAE(two)):
        assert isinstance(model, ObjectiveModel)
    assert not isinstance(object(), ObjectiveModel)
    for name in ("layers", "likelihood", "noise_size", "conditional", "sizes"):
        assert getattr(local, name) is getattr(one, name), name
    # its own: the layers' q do not depend on the samples above them, whatever order the encoder infers in
    assert LocalVAE(VAE(16, [4, 2], [8], "tanh", inference="top-down")).inference == "bottom-up"
    with pytest.raises(AttributeError):
        local.no_such_attribute
    # the objectives score the local twin at the encoder's own heads exactly as the model itself
    rng = np.random.default_rng(0)
    params = one.new_params(rng).views
    x = (rng.random((5, 16)) < 0.5).astype(np.float32)
    eps = rng.standard_normal((2, 5, one.noise_size)).astype(np.float32)
    local_params = with_heads(params, encoder_heads(one, params, x))
    assert HEADS in local_params
    np.testing.assert_allclose(elbo(local, local_params, x, eps), elbo(one, params, x, eps), rtol=1e-6)
