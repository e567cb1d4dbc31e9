"""Dense float64 references for the AutoBandedNormal tests (NumPy, SciPy): the linear-Gaussian state-space
model's exact posterior by the Kalman filter and Rauch-Tung-Striebel smoother, and a band factor as a
dense matrix built from its stencil's neighbours (not from gvae's masks)."""
import numpy as np
from scipy.linalg import cholesky

# x_1 ~ N(0, S0), x_t = A x_{t-1} + N(0, Q), y_t = x_t + N(0, R): one coordinate a step.
A, Q, R, S0 = 0.9, 0.5, 0.3, 1.0


def ssm_prior_precision(T):
    """The prior of x_{1..T} as a dense tridiagonal (T, T) precision."""
    P = np.zeros((T, T))
    P[0, 0] = 1 / S0
    for t in range(1, T):
        # -log p(x_t | x_{t-1}) = (x_t - A x_{t-1})^2 / (2 Q) + const
        P[t, t] += 1 / Q
        P[t - 1, t - 1] += A * A / Q
        P[t, t - 1] = P[t - 1, t] = -A / Q
    return P


def kalman(y):
    """(smoothed means (T,), smoothed variances (T,), log p(y)) by the filter and the RTS smoother."""
    T = len(y)
    m_f, v_f, m_p, v_p = np.zeros(T), np.zeros(T), np.zeros(T), np.zeros(T)
    logz = 0.0
    m, v = 0.0, S0
    for t in range(T):
        if t:
            m, v = A * m_f[t - 1], A * A * v_f[t - 1] + Q
        m_p[t], v_p[t] = m, v
        s = v + R
        logz += -0.5 * (np.log(2 * np.pi * s) + (y[t] - m) ** 2 / s)
        k = v / s
        m_f[t], v_f[t] = m + k * (y[t] - m), (1 - k) * v
    m_s, v_s = m_f.copy(), v_f.copy()
    for t in range(T - 2, -1, -1):
        g = v_f[t] * A / v_p[t + 1]
        m_s[t] = m_f[t] + g * (m_s[t + 1] - m_p[t + 1])
        v_s[t] = v_f[t] + g * g * (v_s[t + 1] - v_p[t + 1])
    return m_s, v_s, logz


# The quantiles at the mean -+ one standard deviation.
ONE_SD = [0.15865525393145707, 0.8413447460685429]


def assert_smoother(y, elbo, mean, variance, quantiles):
    """The guide at the exact posterior of y against the Kalman smoother: its ELBO the log evidence, its
    mean, marginal variances and ONE_SD quantiles (2, T) the smoother's, to 1e-6."""
    m_s, v_s, logz = kalman(y)
    np.testing.assert_allclose(elbo, logz, atol=1e-6, rtol=0)
    np.testing.assert_allclose(mean, m_s, atol=1e-6, rtol=0)
    np.testing.assert_allclose(variance, v_s, atol=1e-6, rtol=0)
    np.testing.assert_allclose((quantiles[1] - quantiles[0]) / 2, np.sqrt(v_s), atol=1e-6, rtol=0)


def ssm_posterior_band(y):
    """(mean, factor (2, T)) of the exact posterior N(mean, (L L^T)^-1): L the Cholesky factor of the
    posterior precision, in band storage on offsets (0, 1)."""
    T = len(y)
    P = ssm_prior_precision(T) + np.eye(T) / R
    L = cholesky(P, lower=True)
    factor = np.zeros((2, T))
    factor[0] = np.diag(L)
    factor[1, 1:] = np.diag(L, -1)
    return np.linalg.solve(P, y / R), factor


def lattice_links(rows, cols, extended):
    """The (i, j), j < i, that a lattice stencil links: left and upper neighbours (and the upper diagonal
    ones for the extended grid), pixels row-major."""
    steps = [(0, -1), (-1, 0)] + ([(-1, -1), (-1, 1)] if extended else [])
    out = []
    for r in range(rows):
        for c in range(cols):
            for dr, dc in steps:
                if 0 <= r + dr < rows and 0 <= c + dc < cols:
                    out.append((r * cols + c, (r + dr) * cols + c + dc))
    return out


def dense_factor(raw, offsets, links, D):
    """L (D, D) from the band parameters ``raw`` (K, D): the main diagonal raw[0], and L[i, j] =
    raw[k, i] with offsets[k] = i - j for each link (i, j); every other entry 0."""
    L = np.diag(raw[0])
    for i, j in links:
        L[i, j] = raw[list(offsets).index(i - j), i]
    return L


def dense_sample(raw, offsets, links, order, loc, eps):
    """loc + (L^-T eps over y = x[order]) in x's coordinates: eps (S, D) standard normals."""
    L = dense_factor(raw, offsets, links, raw.shape[1])
    y = loc[order] + np.linalg.solve(L.T, eps.T).T
    return y[:, np.argsort(order)]


def dense_precision(raw, offsets, links, order):
    """The precision L L^T over y = x[order], as the dense (D, D) precision over x."""
    D = raw.shape[1]
    L = dense_factor(raw, offsets, links, D)
    inverse = np.argsort(order)
    return (L @ L.T)[np.ix_(inverse, inverse)]


# The guides' cases over a model with a 2-vector 'a' then a 3 x 4 field 'x': (guide arguments, the band's order
# over the 2 + 12 latent coordinates, the links of L over y = x[order]).
CASES = {
    "grid on x": (dict(stencil=("grid", 3, 4), sites=["x"]), list(range(2, 14)) + [0, 1], lattice_links(3, 4, False)),
    "extgrid on x": (dict(stencil=("extgrid", 3, 4), sites=["x"]), list(range(2, 14)) + [0, 1],
                     lattice_links(3, 4, True)),
    "chain on all": (dict(), list(range(14)), [(i, i - 1) for i in range(1, 14)]),
    "offsets on x, a": (dict(offsets=(0, 2, 3), sites=["x", "a"]), list(range(2, 14)) + [0, 1],
                        [(i, i - o) for i in range(14) for o in (2, 3) if i - o >= 0]),
}
