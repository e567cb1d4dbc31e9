"""The sparse Gaussian-process layer's bound (towards deep GPs): Titsias's collapsed variational
bound ("Variational Learning of Inducing Variables in Sparse Gaussian Processes", 2009) on the log marginal
likelihood of outputs Y (n, p) given inputs X (n, d), with m inducing inputs Z (m, d) and the ARD squared
exponential covariance (:func:`gvae.ops.rbf_kernel`):

    F = sum_columns log N(y; 0, Q + s^2 I) - p tr(K_nn - Q) / (2 s^2),   Q = K_nm K_mm^-1 K_mn,

computed in O(n m^2) through L L^T = K_mm, A = L^-1 K_mn / s, L_B L_B^T = I + A A^T and c = L_B^-1 A Y / s:

    log N part = -n p log(2 pi s^2) / 2 - p sum log diag L_B - |Y|^2 / (2 s^2) + |c|^2 / 2,
    trace part = -p (n variance) / (2 s^2) + p |A|^2 / 2.

With Z = X (and no jitter) Q = K_nn and F is the exact log marginal likelihood; otherwise a lower bound.
Differentiable in X, Y, Z, the lengthscales, the variance and the noise variance s^2 (the dense algebra's
own VJPs, :mod:`gvae.ops.gp`). With uncertain inputs (:func:`gplvm_bound`) the kernel enters through its
expectations, the psi statistics (:func:`rbf_psi_statistics`): the Bayesian GP-LVM, one layer of a deep GP;
two such layers make :func:`deep_gp_bound`."""
import math

from ... import ops
from ...kernels import array_module


def collapsed_bound(Y, Kmm, psi0, psi1, psi2, noise, jitter=1e-6, Y_var=None):
    """The collapsed bound from the kernel's statistics (Titsias 2009; Titsias and Lawrence 2010 with
    uncertain inputs): Y (n, p), Kmm (m, m) the inducing inputs' covariance, psi0 = sum_n E k(x_n, x_n),
    psi1 (n, m) = E k(x_n, z_m), psi2 (m, m) = sum_n E k(z, x_n) k(x_n, z)^T, the noise variance s^2:

        -n p log(2 pi s^2) / 2 - p log det(I + A) / 2 - |Y|^2 / (2 s^2) + |c|^2 / 2 - p (psi0 / s^2 - tr A) / 2,

    A = L^-1 psi2 L^-T / s^2 (L L^T = Kmm + jitter I), c = C Y, C = L_B^-1 L^-1 psi1^T / s^2 (L_B L_B^T = I + A).

    With ``Y_var`` (n, p) the outputs are themselves uncertain, Y_np ~ N(Y_np, Y_var_np) independently (a
    deep GP's hidden layer, Damianou and Lawrence 2013), and the bound is its expectation: being quadratic
    in Y it adds - sum Y_var / (2 s^2) + sum_n |C_:n|^2 sum_p Y_var_np / 2."""
    n, p = Y.shape
    xp = array_module(ops.value_of(Kmm))
    eye = xp.eye(Kmm.shape[0], dtype=ops.value_of(Kmm).dtype)
    L = ops.cholesky(Kmm + jitter * eye)
    half = ops.solve_triangular(L, psi2)                                       # L^-1 psi2
    A = ops.transpose(ops.solve_triangular(L, ops.transpose(half))) / noise   # L^-1 psi2 L^-T / s^2
    LB = ops.cholesky(A + eye)
    c = ops.solve_triangular(LB, ops.solve_triangular(L, ops.matmul(ops.transpose(psi1), Y))) / noise
    trace_A = ops.sum(A * eye)
    bound = (-0.5 * n * p * (math.log(2 * math.pi) + ops.log(noise)) - 0.5 * p * ops.cholesky_logdet(LB)
             - 0.5 * ops.sum(Y * Y) / noise + 0.5 * ops.sum(c * c) - 0.5 * p * (psi0 / noise - trace_A))
    if Y_var is None:
        return bound
    C = ops.solve_triangular(LB, ops.solve_triangular(L, ops.transpose(psi1))) / noise     # (m, n)
    return bound - 0.5 * ops.sum(Y_var) / noise + 0.5 * ops.sum(ops.sum(C * C, axis=0) * ops.sum(Y_var, axis=1))


def sparse_gp_bound(X, Y, Z, lengthscales, variance, noise, jitter=1e-6):
    """Titsias's bound F (a 0-d array; see the module docstring): X (n, d), Y (n, p), Z (m, d),
    lengthscales (d,), variance and noise (0-d, the signal and noise variances), ``jitter`` added to
    K_mm's diagonal (its Cholesky factor needs it when inducing inputs nearly coincide). The statistics of
    known inputs: psi0 = n variance, psi1 = K_nm, psi2 = K_mn K_nm."""
    Knm = ops.rbf_kernel(X, Z, lengthscales, variance)
    return collapsed_bound(Y, ops.rbf_kernel(Z, Z, lengthscales, variance), X.shape[0] * variance, Knm,
                           ops.matmul(ops.transpose(Knm), Knm), noise, jitter)


def rbf_psi_statistics(mu, S, Z, lengthscales, variance):
    """(psi0, psi1 (n, m), psi2 (m, m)) of the ARD squared exponential under Gaussian inputs
    x_n ~ N(mu_n, diag S_n) (mu, S (n, d)), in closed form (Titsias and Lawrence 2010):

        psi1_nm = v prod_k (1 + S_nk / l_k^2)^(-1/2) exp(-(mu_nk - z_mk)^2 / (2 (l_k^2 + S_nk))),
        psi2_mm' = v^2 sum_n prod_k (1 + 2 S_nk / l_k^2)^(-1/2)
                   exp(-(z_mk - z_m'k)^2 / (4 l_k^2) - (mu_nk - (z_mk + z_m'k) / 2)^2 / (l_k^2 + 2 S_nk)),

    psi0 = n v; composed of gvae's differentiable operations (O(n m^2 d) memory for psi2)."""
    l2 = lengthscales * lengthscales
    mu3, S3 = ops.reshape(mu, (mu.shape[0], 1, mu.shape[1])), ops.reshape(S, (S.shape[0], 1, S.shape[1]))
    d1 = l2 + S3                                                               # (n, 1, d)
    diff = mu3 - ops.reshape(Z, (1,) + Z.shape)                                # (n, m, d)
    psi1 = variance * ops.exp(ops.sum(-0.5 * ops.log(d1 / l2) - 0.5 * diff * diff / d1, axis=-1))
    m, d = Z.shape
    Za, Zb = ops.reshape(Z, (m, 1, d)), ops.reshape(Z, (1, m, d))
    gap = Za - Zb                                                              # (m, m, d)
    centre = ops.reshape(mu, (mu.shape[0], 1, 1, d)) - ops.reshape((Za + Zb) * 0.5, (1, m, m, d))
    d2 = ops.reshape(l2 + 2.0 * S, (S.shape[0], 1, 1, d))
    terms = -0.5 * ops.log(d2 / l2) - ops.reshape(gap * gap / (4.0 * l2), (1, m, m, d)) - centre * centre / d2
    psi2 = variance * variance * ops.sum(ops.exp(ops.sum(terms, axis=-1)), axis=0)
    return mu.shape[0] * variance, psi1, psi2


def gplvm_bound(mu, S, Y, Z, lengthscales, variance, noise, jitter=1e-6):
    """The Bayesian GP-LVM's bound (Titsias and Lawrence, "Bayesian Gaussian Process Latent Variable Model",
    2010): the collapsed bound with the kernel's statistics under q(X) = prod_n N(mu_n, diag S_n), minus
    KL(q(X) || N(0, I)). mu, S (n, d) (S > 0), Y (n, p), Z (m, d)."""
    psi0, psi1, psi2 = rbf_psi_statistics(mu, S, Z, lengthscales, variance)
    return (collapsed_bound(Y, ops.rbf_kernel(Z, Z, lengthscales, variance), psi0, psi1, psi2, noise, jitter)
            - ops.sum(ops.diag_normal_kl(mu, ops.sqrt(S))))


def deep_gp_bound(mu_x, S_x, mu_h, S_h, Y, layers, jitter=1e-6):
    """The two-layer deep GP's bound (Damianou and Lawrence, "Deep Gaussian Processes", 2013): X (n, q) ~
    N(0, I) -> H (n, h) = f1(X) + noise -> Y (n, p) = f2(H) + noise, each f a GP with the ARD squared
    exponential and its own inducing inputs, q(X) = prod N(mu_x, diag S_x), q(H) = prod N(mu_h, diag S_h):

        F = g_Y(q(H)) + g_H(q(X), q(H)) + entropy(q(H)) - KL(q(X) || N(0, I)),

    g_Y the collapsed bound of Y with the kernel's statistics under q(H), g_H that of the uncertain outputs
    H (mean mu_h, variance S_h) under q(X) (:func:`collapsed_bound` with ``Y_var``). ``layers``: two
    (Z (m, d_in), lengthscales (d_in,), variance, noise) tuples, X -> H first. A 0-d array."""
    (Z1, ls1, v1, s1), (Z2, ls2, v2, s2) = layers
    hidden = collapsed_bound(mu_h, ops.rbf_kernel(Z1, Z1, ls1, v1), *rbf_psi_statistics(mu_x, S_x, Z1, ls1, v1), s1,
                             jitter, Y_var=S_h)
    out = collapsed_bound(Y, ops.rbf_kernel(Z2, Z2, ls2, v2), *rbf_psi_statistics(mu_h, S_h, Z2, ls2, v2), s2, jitter)
    entropy = 0.5 * ops.sum(ops.log(S_h)) + 0.5 * S_h.size * (1.0 + math.log(2 * math.pi))
    return out + hidden + entropy - ops.sum(ops.diag_normal_kl(mu_x, ops.sqrt(S_x)))
