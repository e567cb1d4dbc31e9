"""Differentiable dense algebra for Gaussian-process layers: covariance functions and the
Cholesky factor, triangular solves and log-determinant of a batch of positive-definite matrices, each
with its hand-written VJP beside it.

Cholesky's VJP is Murray's ("Differentiation of the Cholesky decomposition", 2016): with P = Phi(L^T G),
Phi taking the lower triangle with the diagonal halved, the gradient of a symmetric A is the symmetric
part of L^-T P L^-1. A triangular solve X = L^-1 B has B's gradient L^-T G and L's -tril(B_bar X^T);
X = L^-T B has L^-1 G and -tril(X B_bar^T).
"""
from ..autodiff import defvjp, defvjp_joint, primitive
from ..kernels import array_module, dense_linalg

__all__ = ["cholesky", "solve_triangular", "cholesky_logdet", "rbf_kernel", "linear_kernel"]


def _t(a):
    return a.swapaxes(-1, -2)


@primitive
def cholesky(A):
    """L (..., n, n), lower triangular, L L^T = A, for symmetric positive-definite A (..., n, n). Its
    gradient is with respect to a symmetric A (the symmetric part)."""
    return dense_linalg.cholesky(A)


def _cholesky_vjp(L, argnums, A):
    xp = array_module(L)

    def vjp(g):
        P = xp.tril(_t(L) @ g)
        n = P.shape[-1]
        P[..., range(n), range(n)] *= 0.5
        M = dense_linalg.solve_triangular(L, P, transposed=True)          # L^-T P
        S = _t(dense_linalg.solve_triangular(L, xp.ascontiguousarray(_t(M)), transposed=True))  # L^-T P L^-1
        return ((S + _t(S)) * 0.5,)
    return vjp


defvjp_joint(cholesky, _cholesky_vjp)


@primitive
def solve_triangular(L, B, transposed=False):
    """X (..., n, m) with L X = B, or L^T X = B when ``transposed``, for lower-triangular L (..., n, n)
    and B (..., n, m); gradients for both (L's on its lower triangle)."""
    return dense_linalg.solve_triangular(L, B, transposed)


def _solve_vjp(X, argnums, L, B, transposed=False):
    xp = array_module(X)

    def vjp(g):
        Bbar = dense_linalg.solve_triangular(L, xp.ascontiguousarray(g), not transposed)
        Lbar = None
        if 0 in argnums:
            Lbar = -xp.tril(X @ _t(Bbar) if transposed else Bbar @ _t(X))
        return Lbar, Bbar
    return vjp


defvjp_joint(solve_triangular, _solve_vjp)


@primitive
def cholesky_logdet(L):
    """log det(L L^T) = 2 sum_i log L_ii for Cholesky factors L (..., n, n): shape (...)."""
    xp = array_module(L)
    return 2.0 * xp.log(xp.diagonal(L, axis1=-2, axis2=-1)).sum(-1)


def _logdet_vjp(ans, L):
    xp = array_module(L)

    def vjp(g):
        out = xp.zeros_like(L)
        n = L.shape[-1]
        out[..., range(n), range(n)] = 2.0 * g[..., None] / xp.diagonal(L, axis1=-2, axis2=-1)
        return out
    return vjp


defvjp(cholesky_logdet, _logdet_vjp)


@primitive
def rbf_kernel(X, Z, lengthscales, variance):
    """K (N, M), K_ij = variance exp(-sum_k (X_ik - Z_jk)^2 / (2 lengthscales_k^2)): the squared
    exponential covariance with one lengthscale per input dimension (ARD), X (N, d), Z (M, d),
    lengthscales (d,) > 0, variance a 0-d array > 0."""
    xp = array_module(X, Z)
    Xs, Zs = X / lengthscales, Z / lengthscales
    r2 = (Xs * Xs).sum(-1)[:, None] + (Zs * Zs).sum(-1)[None, :] - 2.0 * (Xs @ Zs.T)
    return variance * xp.exp(-0.5 * xp.maximum(r2, 0.0))  # the rounding of a distance near 0 can go below


def _rbf_vjp(K, argnums, X, Z, lengthscales, variance):
    def vjp(g):
        W = g * K
        rows, cols = W.sum(1), W.sum(0)
        l2 = lengthscales * lengthscales
        WZ = W @ Z
        gX = -(X * rows[:, None] - WZ) / l2
        gZ = (W.T @ X - Z * cols[:, None]) / l2
        gl = (rows @ (X * X) - 2.0 * (X * WZ).sum(0) + cols @ (Z * Z)) / (l2 * lengthscales)
        gv = W.sum() / variance
        return gX, gZ, gl, gv
    return vjp


defvjp_joint(rbf_kernel, _rbf_vjp)


@primitive
def linear_kernel(X, Z, variances):
    """K (N, M) = X diag(variances) Z^T: the linear covariance with one variance per input dimension,
    X (N, d), Z (M, d), variances (d,) >= 0."""
    return (X * variances) @ Z.T


def _linear_vjp(K, argnums, X, Z, variances):
    def vjp(g):
        gZv = g @ Z
        return gZv * variances, g.T @ X * variances, (X * gZv).sum(0)
    return vjp


defvjp_joint(linear_kernel, _linear_vjp)
