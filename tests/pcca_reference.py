"""Probabilistic CCA in closed form, in float64 NumPy (Bach and Jordan, "A probabilistic interpretation of
canonical correlation analysis", 2005): the reference the linear-Gaussian VCCA is checked against.

The model: z ~ N(0, I_d), x_k = W_k z + mu_k + e_k, e_k ~ N(0, Psi_k), k = 1, 2. Their Theorem 2: with the
sample covariances S_11, S_22, S_12 (divided by N) and the first d canonical directions U_kd (U_k^T S_kk
U_k = I) and correlations P_d = diag(rho_1..rho_d), the maximum-likelihood estimates are

    W_k = S_kk U_kd M_k,  Psi_k = S_kk - W_k W_k^T,  mu_k = the sample means,

for any M_1, M_2 of spectral norm below 1 with M_1 M_2^T = P_d. The joint covariance C they give has
|C| = |S_11| |S_22| prod_i (1 - rho_i^2) and tr(C^-1 S) = D_1 + D_2, so the largest mean log-likelihood is

    -1/2 [(D_1 + D_2) (log 2 pi + 1) + log |S_11| + log |S_22| + sum_{i <= d} log(1 - rho_i^2)].
"""
import math

import numpy as np
import scipy.linalg


def _inverse_sqrt(S):
    w, V = np.linalg.eigh(S)
    return (V / np.sqrt(w)) @ V.T


def canonical(S11, S22, S12):
    """(rho, U1, U2): the canonical correlations, largest first, and directions with U_k^T S_kk U_k = I."""
    R1, R2 = _inverse_sqrt(S11), _inverse_sqrt(S22)
    A, rho, Bt = np.linalg.svd(R1 @ S12 @ R2)
    return rho, R1 @ A, R2 @ Bt.T


def covariances(x1, x2):
    """(mu1, mu2, S11, S22, S12) of N pairs, the covariances divided by N (maximum likelihood's)."""
    mu1, mu2 = x1.mean(0), x2.mean(0)
    c1, c2 = x1 - mu1, x2 - mu2
    n = len(x1)
    return mu1, mu2, c1.T @ c1 / n, c2.T @ c2 / n, c1.T @ c2 / n


def pcca_ml(x1, x2, d):
    """The maximum-likelihood PCCA of d shared units (M_1 = M_2 = P_d^(1/2)): a dict of W1, W2, Psi1, Psi2,
    mu1, mu2, rho (every canonical correlation) and ``loglik`` (the closed-form mean log-likelihood)."""
    mu1, mu2, S11, S22, S12 = covariances(x1, x2)
    rho, U1, U2 = canonical(S11, S22, S12)
    M = np.diag(np.sqrt(rho[:d]))
    W1, W2 = S11 @ U1[:, :d] @ M, S22 @ U2[:, :d] @ M
    D = len(mu1) + len(mu2)
    loglik = -0.5 * (D * (math.log(2 * math.pi) + 1) + np.linalg.slogdet(S11)[1] + np.linalg.slogdet(S22)[1]
                     + np.log1p(-rho[:d] ** 2).sum())
    return {"W1": W1, "W2": W2, "Psi1": S11 - W1 @ W1.T, "Psi2": S22 - W2 @ W2.T, "mu1": mu1, "mu2": mu2,
            "rho": rho, "loglik": loglik}


def joint_covariance(W1, W2, Psi1, Psi2):
    """C = W W^T + blockdiag(Psi1, Psi2) of the stacked views, W = [W1; W2]."""
    W = np.vstack([W1, W2])
    return W @ W.T + scipy.linalg.block_diag(Psi1, Psi2)


def model_correlations(W1, W2, Psi1, Psi2):
    """The canonical correlations of the model's own joint covariance, largest first."""
    C = joint_covariance(W1, W2, Psi1, Psi2)
    n1 = len(W1)
    return canonical(C[:n1, :n1], C[n1:, n1:], C[:n1, n1:])[0]


def log_likelihood(x1, x2, W1, W2, Psi1, Psi2, mu1, mu2):
    """log N([x1, x2]; [mu1, mu2], C) per pair, (N,)."""
    C = joint_covariance(W1, W2, Psi1, Psi2)
    r = np.hstack([x1 - mu1, x2 - mu2])
    chol = np.linalg.cholesky(C)
    u = scipy.linalg.solve_triangular(chol, r.T, lower=True)
    return -0.5 * (u * u).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * len(C) * math.log(2 * math.pi)
