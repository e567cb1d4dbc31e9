"""The MMD kernel against a dense NumPy reference, its errors, and the InfoVAE objective built on it
(--mmd W, --alpha A, --mmd-kernel); its gradient is checked with every op's in tests/test_op_gradients.py."""
import numpy as np
import pytest

from gvae import kernels, ops
from gvae.model import VAE
from gvae.model.objectives import layer_terms, training_loss
from gvae.training import TrainConfig


def dense_mmd(z, y, kernel, C):
    z, y = z.astype(np.float64), y.astype(np.float64)

    def k(a, b):
        r2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return C / (C + r2) if kernel == "imq" else np.exp(-r2 / C)

    def grad():  # d/dz_i: 2/B^2 sum_j dk(z_i, z_j) - 2/(B M) sum_j dk(z_i, y_j), dk/da = k' 2 (a - b)
        out = np.zeros_like(z)
        for x, w in ((z, 2 / len(z) ** 2), (y, -2 / (len(z) * len(y)))):
            r2 = ((z[:, None] - x[None]) ** 2).sum(-1)
            kk = C / (C + r2) if kernel == "imq" else np.exp(-r2 / C)
            dk = -kk * kk / C if kernel == "imq" else -kk / C
            out += w * (2 * dk[..., None] * (z[:, None] - x[None])).sum(1)
        return out
    return k(z, z).mean() + k(y, y).mean() - 2 * k(z, y).mean(), grad()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("B,M,d,scale", [(1, 1, 1, None), (7, 5, 3, None), (33, 40, 16, None), (20, 20, 4, 0.05),
                                         (9, 3, 2, 1e4)])
def test_against_a_dense_reference(dtype, kernel, B, M, d, scale):
    rng = np.random.default_rng(B * M + d)
    z, y = rng.standard_normal((B, d)).astype(dtype), rng.standard_normal((M, d)).astype(dtype)
    value, grad = kernels.mmd(z, y, kernel, scale, want_grad=True)
    ref, ref_grad = dense_mmd(z, y, kernel, 2.0 * d if scale is None else scale)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert value.dtype == dtype and grad.dtype == dtype and value.shape == ()
    np.testing.assert_allclose(value, ref, rtol=tol, atol=tol * 1e-2)
    np.testing.assert_allclose(grad, ref_grad, rtol=tol * 10, atol=tol * np.abs(ref_grad).max())
    assert kernels.mmd(z, y, kernel, scale)[1] is None


def test_identical_samples_have_zero_discrepancy_and_distinct_ones_a_positive_one():
    z = np.random.default_rng(0).standard_normal((50, 4))
    assert abs(float(kernels.mmd(z, z.copy())[0])) < 1e-15
    assert float(kernels.mmd(z, z + 3.0)[0]) > 0.1


@pytest.mark.parametrize("args,error,match", [
    ((np.ones((3, 2)), np.ones((3, 3))), ValueError, "one d"),
    ((np.ones((3, 2)), np.ones((3, 2), np.float32)), TypeError, "share one dtype"),
    ((np.ones((2, 3, 2)), np.ones((3, 2))), ValueError, "2-D"),
    ((np.ones((0, 2)), np.ones((3, 2))), ValueError, "B, M >= 1"),
    ((np.ones((3, 2)), np.ones((3, 2)), "laplace"), ValueError, "kernel must be one of imq, rbf"),
    ((np.ones((3, 2)), np.ones((3, 2)), "imq", -1.0), ValueError, "scale must be a positive finite"),
    ((np.ones((3, 2), int), np.ones((3, 2))), TypeError, "float32 or float64"),
    # d = 0 was blamed on the scale ("scale must be a positive finite number, got None")
    ((np.ones((3, 0)), np.ones((4, 0))), ValueError, r"^mmd: z and y have latent dimension d = 0 .*expected d >= 1"),
    ((np.ones((3, 0)), np.ones((4, 0)), "rbf", 1.0), ValueError, "latent dimension d = 0"),
])
def test_bad_arguments_are_named(args, error, match):
    with pytest.raises(error, match=match):
        kernels.mmd(*args)


def test_the_op_refuses_a_zero_latent_dimension():
    from gvae.autodiff import value_and_grad
    with pytest.raises(ValueError, match="^mmd: z and y have latent dimension d = 0"):
        ops.mmd(np.ones((3, 0)), np.ones((3, 0)))
    with pytest.raises(ValueError, match="^mmd: z and y have latent dimension d = 0"):
        value_and_grad(lambda a: ops.mmd(a, np.ones((3, 0))))(np.ones((3, 0)))


def test_no_gradient_for_the_reference_sample():
    from gvae.autodiff import value_and_grad
    z, y = np.ones((3, 2)), np.zeros((3, 2))
    with pytest.raises(ValueError, match="reference sample"):
        value_and_grad(lambda a, b: ops.mmd(a, b), argnums=1)(z, y)


def _case(posterior):
    model = VAE(9, 6, [6], "elu", posterior=posterior, dtype=np.float64)
    params = model.new_params(np.random.default_rng(0)).views
    rng = np.random.default_rng(1)
    x = (rng.random((5, 9)) < 0.5).astype(np.float64)
    return model, params, x, rng.standard_normal((2, 5, model.noise_size)), rng.standard_normal((10, 6))


@pytest.mark.parametrize("posterior", ["diagonal", "chain", "extgrid"])
def test_the_infovae_loss_is_the_weighted_elbo_plus_the_weighted_mmd(posterior):
    model, params, x, eps, y = _case(posterior)
    plain, aux = training_loss(params, model, x, eps, kl_weight=0.25)
    _, _, _, zs = layer_terms(model, params, x, eps)
    for kernel in ("imq", "rbf"):
        loss, aux_mmd = training_loss(params, model, x, eps, kl_weight=0.25, mmd=(3.0, y, kernel))
        expected = plain + 3.0 * float(kernels.mmd(zs[-1].reshape(-1, 6), y, kernel)[0])
        assert loss == pytest.approx(expected, rel=1e-12) and aux_mmd == aux
    zero, _ = training_loss(params, model, x, eps, kl_weight=0.25, mmd=(0.0, y, "imq"))
    assert zero == plain  # a zero weight adds exactly nothing


def test_alpha_scales_the_rate_and_the_combinations_are_checked(tmp_path):
    from gvae.training.trainer import Trainer
    from tests.helpers import make_data
    trainer = Trainer(TrainConfig(latent=2, hidden=(8,), epochs=1, batch_size=50, alpha=0.75, beta=2.0, mmd=1.0),
                      make_data(), tmp_path / "run", progress=False, quiet=True)
    assert trainer.kl_weight(0.0) == 0.5
    for bad, match in ((dict(mmd=1.0, iw_samples=3), "without iw_samples"), (dict(mmd=-1.0), "mmd must be"),
                       (dict(alpha=1.5), "alpha must lie in"), (dict(mmd_kernel="cosine"), "mmd_kernel")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)
