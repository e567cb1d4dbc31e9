"""The public Numba kernels of :mod:`gvae.kernels` at the shapes the VAE step uses, float32."""
import inspect

import numpy as np

from gvae import kernels

from .common import Benchmark

HIDDEN = 500
N_IN = 784
LATENT = 16
N_PARAMS_VAE = 1_310_816  # the 784-500-500-16 VAE


class BiasActivation(Benchmark):
    """Fused bias + activation of a (batch, 500) hidden layer, forward and backward."""

    params = [[100, 1000], ["linear", "relu", "elu", "tanh", "softplus", "sigmoid"]]
    param_names = ["batch", "activation"]

    def setup(self, batch, activation):
        if activation not in kernels.ACTIVATIONS:
            raise NotImplementedError(f"activation {activation!r} not in this version")
        rng = np.random.default_rng(0)
        self.h0 = rng.standard_normal((batch, HIDDEN), dtype=np.float32)
        self.h = np.empty_like(self.h0)
        self.b = rng.standard_normal(HIDDEN, dtype=np.float32) * np.float32(0.1)
        self.g = rng.standard_normal((batch, HIDDEN), dtype=np.float32)
        self.y = kernels.bias_activation(self.h0.copy(), self.b, activation)
        self.gh = np.empty_like(self.g)
        self.time_forward(batch, activation)
        self.time_backward(batch, activation)

    def time_forward(self, batch, activation):
        # The kernel works in place: restore its input first (a 0.2-2 MB copy, small beside the kernel).
        np.copyto(self.h, self.h0)
        kernels.bias_activation(self.h, self.b, activation)

    def time_backward(self, batch, activation):
        kernels.bias_activation_grad(self.g, self.y, activation, out=self.gh)


class BernoulliLoglik(Benchmark):
    """log p(x | logits) over 784 pixels, with and without the gradient wrt the logits."""

    params = [[100, 1000]]
    param_names = ["batch"]

    def setup(self, batch):
        rng = np.random.default_rng(0)
        self.logits = rng.standard_normal((batch, N_IN), dtype=np.float32) * np.float32(3.0)
        self.x = (rng.random((batch, N_IN)) < 0.2).astype(np.float32)
        self.time_loglik(batch)
        self.time_loglik_grad(batch)

    def time_loglik(self, batch):
        kernels.bernoulli_loglik(self.logits, self.x)

    def time_loglik_grad(self, batch):
        kernels.bernoulli_loglik(self.logits, self.x, want_grad=True)


class DiagNormalKL(Benchmark):
    """KL(N(mu, diag sigma^2) || N(0, I)) for d = 16, with and without its gradients."""

    params = [[100, 1000, 10000]]
    param_names = ["batch"]

    def setup(self, batch):
        rng = np.random.default_rng(0)
        self.mu = rng.standard_normal((batch, LATENT), dtype=np.float32)
        self.sigma = np.exp(rng.standard_normal((batch, LATENT), dtype=np.float32) * np.float32(0.5))
        self.time_kl(batch)
        self.time_kl_grad(batch)

    def time_kl(self, batch):
        kernels.diag_normal_kl(self.mu, self.sigma)

    def time_kl_grad(self, batch):
        kernels.diag_normal_kl(self.mu, self.sigma, want_grad=True)


class Adam(Benchmark):
    """One fused Adam step and the global gradient norm over a flat float32 buffer."""

    params = [[10_000, N_PARAMS_VAE, 10_000_000]]
    param_names = ["size"]

    def setup(self, size):
        rng = np.random.default_rng(0)
        self.p = rng.standard_normal(size, dtype=np.float32)
        self.g = rng.standard_normal(size, dtype=np.float32) * np.float32(1e-2)
        self.m = np.zeros_like(self.p)
        self.v = np.zeros_like(self.p)
        self.time_update(size)
        self.time_sum_squares(size)

    def time_update(self, size):
        # A fixed step count keeps the bias correction, and so the work, the same on every call.
        kernels.adam_update(self.p, self.g, self.m, self.v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                            step=10)

    def time_sum_squares(self, size):
        kernels.sum_squares(self.g)


class AdamAverage(Benchmark):
    """Adam with the Polyak average's step in its pass, against the two passes (the Adam step, then
    ``average_update``), over a flat float32 buffer. Skipped on the commits before the average joined the
    pass (the suite runs on the history's older commits too)."""

    params = Adam.params
    param_names = Adam.param_names

    def setup(self, size):
        if "average" not in inspect.signature(kernels.adam_update).parameters:
            raise NotImplementedError("adam_update takes no average before commit ccf075e")
        rng = np.random.default_rng(0)
        self.p = rng.standard_normal(size, dtype=np.float32)
        self.g = rng.standard_normal(size, dtype=np.float32) * np.float32(1e-2)
        self.m, self.v, self.a = np.zeros_like(self.p), np.zeros_like(self.p), np.zeros_like(self.p)
        self.time_update_with_average(size)
        self.time_update_then_average(size)

    def time_update_with_average(self, size):
        kernels.adam_update(self.p, self.g, self.m, self.v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                            step=10, average=self.a, decay=0.999)

    def time_update_then_average(self, size):
        kernels.adam_update(self.p, self.g, self.m, self.v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                            step=10)
        kernels.average_update(self.a, self.p, decay=0.999)


class GammaDraws(Benchmark):
    """The deep exponential families' draws over 10,000 items, float32: the gamma quantile and its shape
    derivative at shapes near ``shape`` (the DEF's posteriors: 0.2-5; its gamma weights: about 100), and
    Poisson counts by the inverse CDF at rates near ``shape``. Skipped on the commits before gvae's own
    kernels replaced SciPy's (they had no ``poisson_draw``)."""

    params = [[0.5, 5.0, 100.0]]
    param_names = ["shape"]

    def setup(self, shape):
        from gvae.kernels import gamma
        if not hasattr(gamma, "poisson_draw"):
            raise NotImplementedError("gvae.kernels.gamma has no poisson_draw before commit c6090e0")
        self.gamma = gamma
        rng = np.random.default_rng(0)
        self.alpha = (shape * rng.uniform(0.5, 1.5, 10_000)).astype(np.float32)
        self.u = rng.uniform(2.0 ** -24, 1 - 2.0 ** -24, 10_000).astype(np.float32)
        self.z = gamma.gamma_inverse_cdf(self.alpha, self.u)
        self.time_inverse_cdf(shape)
        self.time_shape_grad(shape)
        self.time_poisson_draw(shape)

    def time_inverse_cdf(self, shape):
        self.gamma.gamma_inverse_cdf(self.alpha, self.u)

    def time_shape_grad(self, shape):
        self.gamma.gamma_draw_shape_grad(self.alpha, self.z)

    def time_poisson_draw(self, shape):
        self.gamma.poisson_draw(self.alpha, self.u, 80)
