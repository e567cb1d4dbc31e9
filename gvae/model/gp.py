"""The sparse Gaussian-process layer's bound (issue 53, towards deep GPs): Titsias's collapsed variational
bound ("Variational Learning of Inducing Variables in Sparse Gaussian Processes", 2009) on the log marginal
likelihood of outputs Y (n, p) given inputs X (n, d), with m inducing inputs Z (m, d) and the ARD squared
exponential covariance (:func:`gvae.ops.rbf_kernel`):

    F = sum_columns log N(y; 0, Q + s^2 I) - p tr(K_nn - Q) / (2 s^2),   Q = K_nm K_mm^-1 K_mn,

computed in O(n m^2) through L L^T = K_mm, A = L^-1 K_mn / s, L_B L_B^T = I + A A^T and c = L_B^-1 A Y / s:

    log N part = -n p log(2 pi s^2) / 2 - p sum log diag L_B - |Y|^2 / (2 s^2) + |c|^2 / 2,
    trace part = -p (n variance) / (2 s^2) + p |A|^2 / 2.

With Z = X (and no jitter) Q = K_nn and F is the exact log marginal likelihood; otherwise a lower bound.
Differentiable in X, Y, Z, the lengthscales, the variance and the noise variance s^2 (the dense algebra's
own VJPs, :mod:`gvae.ops.gp`)."""
import math

import numpy as np

from .. import ops
from ..kernels import array_module


def sparse_gp_bound(X, Y, Z, lengthscales, variance, noise, jitter=1e-6):
    """Titsias's bound F (a 0-d array; see the module docstring): X (n, d), Y (n, p), Z (m, d),
    lengthscales (d,), variance and noise (0-d, the signal and noise variances), ``jitter`` added to
    K_mm's diagonal (its Cholesky factor needs it when inducing inputs nearly coincide)."""
    n, p = Y.shape
    m = Z.shape[0]
    xp = array_module(ops.value_of(Z))
    eye = xp.eye(m, dtype=ops.value_of(Z).dtype)
    L = ops.cholesky(ops.rbf_kernel(Z, Z, lengthscales, variance) + jitter * eye)
    s = ops.sqrt(noise)
    A = ops.solve_triangular(L, ops.rbf_kernel(Z, X, lengthscales, variance)) / s
    B = ops.matmul(A, ops.transpose(A)) + eye
    LB = ops.cholesky(B)
    c = ops.solve_triangular(LB, ops.matmul(A, Y)) / s
    log_normal = (-0.5 * n * p * (math.log(2 * math.pi) + ops.log(noise)) - 0.5 * p * ops.cholesky_logdet(LB)
                  - 0.5 * ops.sum(Y * Y) / noise + 0.5 * ops.sum(c * c))
    trace = -0.5 * p * n * variance / noise + 0.5 * p * ops.sum(A * A)
    return log_normal + trace


def exact_gp_log_likelihood(X, Y, lengthscales, variance, noise):
    """The exact log marginal likelihood sum_columns log N(y; 0, K_nn + s^2 I), in NumPy (the reference the
    bound meets at Z = X)."""
    from scipy.stats import multivariate_normal
    K = ops.rbf_kernel(X, X, lengthscales, variance) + noise * np.eye(len(X))
    return float(sum(multivariate_normal(np.zeros(len(X)), K).logpdf(Y[:, j]) for j in range(Y.shape[1])))
