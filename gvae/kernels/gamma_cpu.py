"""CPU kernels of :mod:`gamma`: the standard gamma distribution's inverse CDF, the derivative of a draw in
the shape (implicit reparameterisation), log Gamma and digamma, and Poisson draws by the inverse CDF: Numba
kernels over flat arrays with C entries, so that a training step made of them is recorded and replayed
natively (:mod:`.cpu.programs`); the maths in float64 whatever the arrays' dtype.

The regularised incomplete gamma function P(a, x) is its power series where x < a + 1 and Legendre's
continued fraction for Q = 1 - P elsewhere (evaluated by the modified Lentz method), each with the
prefactor x^a e^-x / Gamma(a) taken in log space (Abramowitz and Stegun 6.5.29 and 6.5.31; from a = 10 on
through Stirling's series, so that its large terms cancel exactly). The inverse starts from Wilson and
Hilferty's cube-root normal approximation (a > 1) or from the small-x and large-x limits of P and takes
Halley steps: below the median on log P(a, e^y) - log u in y = log x, above it on (1 - u) - Q(a, x), where
1 - u is exact and Q keeps its relative precision. The derivative of a draw in the shape differentiates the
same series and continued fraction in a, term by term (no difference step). Digamma is its recurrence up
to x >= 10, then its asymptotic series. A Poisson count is the least k with Q(k + 1, rate) > u, searched
from a Cornish-Fisher start by the pmf's recurrence, in whichever tail keeps its relative precision.
Accuracy against SciPy and mpmath: tests/test_gamma.py."""
import math

import numpy as np

from .arithmetic import contiguous
from .backend import register
from .cpu import threads
from .cpu.entries import FLOAT, INT, Entry, array, run_blocks
from .cpu.jit import jit

_EPS = 1e-16        # the series' and the continued fraction's relative stopping point
_TINY = 1e-300      # the continued fraction's guard against a zero denominator
_EXACT_RATE = 1e9   # Poisson counts are found exactly up to this rate (the CDF costs ~9 sqrt(rate) terms)
_TERMS = 100_000    # at most this many terms of either, plus _WIDTH sqrt(a): where x is near a, the series'
_WIDTH = 60.0       # terms fall as exp(-n^2 / 2a) and the fraction converges alike (9 sqrt(a) reach 1e-17)
_STEPS = 100        # at most this many Halley steps of the inverse (a handful are needed)
LGAMMA, DIGAMMA = 0, 1
_SPECIAL = {"lgamma": LGAMMA, "digamma": DIGAMMA}


@jit
def _log_front(a, x):
    """log(x^a e^-x / Gamma(a)), for a > 0, 0 < x < inf. From a = 10 on, as 1/2 log(a / 2 pi) + a (log(1 + t)
    - t) - s(a) with x = a (1 + t) and s(a) Stirling's remainder of log Gamma(a): the terms a log x, x and
    log Gamma(a), each near a log a, no longer cancel (1e-14 absolute where the direct sum errs by 1e-11 at
    a = 1e4)."""
    if a < 10.0:
        return a * math.log(x) - x - math.lgamma(a)
    t = (x - a) / a
    if abs(t) < 0.1:  # log(1 + t) - t = sum_k>=2 (-1)^(k+1) t^k / k, to 0.1^21 / 21
        power, total = t * t, 0.0
        for k in range(2, 22):
            total += power / k if k % 2 == 1 else -power / k
            power *= t
    else:
        total = math.log(x / a) - t  # (not log1p(t): 1 + t would lose x where x << a)
    r = 1.0 / (a * a)  # s(a) = sum B_2k / (2k (2k - 1) a^(2k - 1)), seven terms: 1e-17 at a = 10
    remainder = (1.0 / 12 - r * (1.0 / 360 - r * (1.0 / 1260 - r * (1.0 / 1680 - r * (1.0 / 1188 - r * (
        691.0 / 360360 - r / 156.0)))))) / a
    return 0.5 * math.log(a / (2.0 * math.pi)) + a * total - remainder


@jit(inline="always")
def _terms(a):
    """How many terms of the series or the continued fraction are taken at most, for the shape a."""
    return _TERMS + int(_WIDTH * math.sqrt(a))


@jit
def _incomplete(a, x):
    """(P(a, x), Q(a, x), log P(a, x), log(x^a e^-x / Gamma(a))): the regularised lower and upper incomplete
    gamma functions, the log of the lower one (exact where P underflows) and of their prefactor, for a > 0,
    x >= 0."""
    if x <= 0.0:
        return 0.0, 1.0, -math.inf, -math.inf
    if math.isinf(x):
        return 1.0, 0.0, 0.0, -math.inf
    log_front = _log_front(a, x)
    if x < a + 1.0:
        # P = x^a e^-x / Gamma(a + 1) sum_n x^n / ((a + 1) ... (a + n)), every term positive
        term = 1.0 / a
        total = term
        shape = a
        for _ in range(_terms(a)):
            shape += 1.0
            term *= x / shape
            total += term
            if term < total * _EPS:
                break
        p = total * math.exp(log_front)
        return p, 1.0 - p, math.log(total) + log_front, log_front
    # Q = x^a e^-x / Gamma(a) / (x + 1 - a - 1 (1 - a) / (x + 3 - a - 2 (2 - a) / (x + 5 - a - ...)))
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _terms(a)):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    q = math.exp(log_front) * h
    return 1.0 - q, q, math.log1p(-q), log_front


@jit
def incomplete(a, x):
    """(P(a, x), Q(a, x)), the regularised lower and upper incomplete gamma functions, for a > 0, x >= 0."""
    p, q, _, _ = _incomplete(a, x)
    return p, q


@jit
def _start(a, u):
    """A first guess of P^-1(a, u): Wilson and Hilferty's for a > 1 (the normal quantile from Abramowitz
    and Stegun 26.2.22, to 3e-3) and the inverse of P's small-x limit x^a / Gamma(a + 1) where theirs is
    not positive, else that limit's inverse below t and the exponential tail's above."""
    if a > 1.0:
        tail = u if u < 0.5 else 1.0 - u
        t = math.sqrt(-2.0 * math.log(tail))
        normal = t - (2.30753 + 0.27061 * t) / (1.0 + (0.99229 + 0.04481 * t) * t)
        if u < 0.5:
            normal = -normal
        root = 1.0 - 1.0 / (9.0 * a) + normal / (3.0 * math.sqrt(a))
        if root > 0.0:
            return a * root * root * root
        return math.exp((math.log(u) + math.lgamma(a + 1.0)) / a)
    t = 1.0 - a * (0.253 + 0.12 * a)
    if u < t:
        return math.exp((math.log(u) - math.log(t)) / a)
    return 1.0 - math.log(1.0 - (u - t) / (1.0 - t))


@jit
def quantile(a, u):
    """x = P^-1(a, u), the u-quantile of Gamma(a, 1), for a > 0 and u in [0, 1]: Halley's steps, below the
    median on log P(a, e^y) - log u in y = log x (nearly linear in y where x is small, so that a tail as far
    as u = 1e-300 takes a few steps), above it on (1 - u) - Q(a, x) in x. Their error cubes at each step, so
    a step under 1e-7 of x is the last."""
    if not (a > 0.0) or not (0.0 <= u <= 1.0):
        return math.nan
    if u == 0.0:
        return 0.0
    if u == 1.0:
        return math.inf
    upper = u >= 0.5
    x = _start(a, u)
    log_u = math.log(u)
    previous = math.inf
    for _ in range(_STEPS):
        if x == 0.0:  # (below the smallest float: the quantile underflows)
            return 0.0
        p, q, log_p, log_front = _incomplete(a, x)
        log_x = math.log(x)
        if upper:
            density = math.exp(log_front - log_x)
            if density == 0.0 or math.isinf(density):
                break
            step = ((1.0 - u) - q) / density
            # Halley's correction, f''/f' = (a - 1) / x - 1, clipped so that a step never turns back
            step = step / (1.0 - 0.5 * min(1.0, step * ((a - 1.0) / x - 1.0)))
            relative = step / x
        else:
            # g = log P - log u: g' = x p(x) / P = exp(log(x^a e^-x / Gamma(a)) - log P), g''/g' = a - x - g'
            slope = math.exp(log_front - log_p)
            relative = (log_p - log_u) / slope
            relative = relative / (1.0 - 0.5 * min(1.0, relative * (a - x - slope)))
        # Converged, or at the noise of P's last bits: a step that no longer halves near the root is that
        # noise, and x stays as it is.
        if abs(relative) < 1e-8 and abs(relative) > 0.5 * previous:
            break
        previous = abs(relative)
        if upper:
            last = x
            x -= step
            if x <= 0.0:
                x = 0.5 * last
        else:
            x *= math.exp(-max(min(relative, 50.0), -50.0))
        if abs(relative) <= 1e-7:
            break
    return x


@jit
def digamma(x):
    """d log Gamma(x) / dx (SciPy's psi at its poles: -inf at +0, +inf at -0, NaN at the negative integers)."""
    if x == 0.0:
        return -math.copysign(math.inf, x)
    if x < 0.0:
        if x == math.floor(x):
            return math.nan
        return digamma(1.0 - x) - math.pi / math.tan(math.pi * x)  # the reflection formula
    total = 0.0
    while x < 10.0:
        total -= 1.0 / x
        x += 1.0
    r = 1.0 / (x * x)  # ln x - 1/(2x) - sum B_2k / (2k x^2k), seven terms: 4e-17 relative at x = 10
    series = r * (1.0 / 12 - r * (1.0 / 120 - r * (1.0 / 252 - r * (1.0 / 240 - r * (1.0 / 132 - r * (
        691.0 / 32760 - r / 12.0))))))
    return total + math.log(x) - 0.5 / x - series


@jit
def shape_derivative(a, x):
    """dx/da at fixed P(a, x), for a > 0 and 0 < x < inf: the derivative of the draw x = P^-1(a, u) in the
    shape (Figurnov et al., "Implicit Reparameterization Gradients", 2018), -(dP/da) / p(x; a). With
    P = f S, f = x^a e^-x / Gamma(a) and p(x; a) = f / x, the prefactor cancels. Where :func:`_incomplete`
    sums the series S = sum_n t_n, t_n = Gamma(a) x^n / Gamma(a + n + 1), dt_n/da = t_n (digamma(a) -
    digamma(a + n + 1)), so dx/da = -x sum_n t_n (log x - digamma(a + n + 1)). Where it takes the continued
    fraction h = Q / f, h is differentiated in a along the modified Lentz recurrence, and dx/da = x (h (log x -
    digamma(a)) + dh/da). Zero at x = 0 (the draw stays there); NaN outside the domain."""
    if not (a > 0.0) or not (0.0 <= x < math.inf):
        return math.nan
    if x == 0.0:
        return 0.0
    log_x = math.log(x)
    if x < a + 1.0:
        term = 1.0 / a
        psi = digamma(a + 1.0)
        total = term * (log_x - psi)
        size = term * (abs(log_x) + abs(psi))  # the sum of the terms' magnitudes: where to stop
        shape = a
        for _ in range(_terms(a)):
            shape += 1.0
            psi += 1.0 / shape
            term *= x / shape
            part = term * (log_x - psi)
            total += part
            size += abs(part)
            if term * (abs(log_x) + abs(psi)) < size * _EPS:
                break
        return -x * total
    # h = 1 / (b0 + an_1 / (b1 + an_2 / ...)), b_i = x + 1 - a + 2 i, an_i = -i (i - a), and with each
    # quantity of the recurrence its derivative in a (db/da = -1, dan_i/da = i)
    b = x + 1.0 - a
    c, dc = 1.0 / _TINY, 0.0
    d = 1.0 / b
    dd = d * d  # -(db/da) / b^2
    h, dh = d, dd
    for i in range(1, _terms(a)):
        an = -i * (i - a)
        b += 2.0
        den = an * d + b
        dden = i * d + an * dd - 1.0
        if abs(den) < _TINY:
            den, dden = _TINY, 0.0
        c_next = b + an / c
        dc = -1.0 + i / c - an * dc / (c * c)
        c = c_next
        if abs(c) < _TINY:
            c, dc = _TINY, 0.0
        d = 1.0 / den
        dd = -dden * d * d
        delta = d * c
        d_delta = dd * c + d * dc
        dh = dh * delta + h * d_delta
        h *= delta
        if abs(delta - 1.0) < _EPS and abs(h * d_delta) <= _EPS * abs(dh):
            break
    return x * (h * (log_x - digamma(a)) + dh)


@jit
def normal_quantile(u):
    """Phi^-1(u) for 0 < u < 1: Abramowitz and Stegun 26.2.23 (to 4.5e-4) in the nearer tail, then Newton
    steps on that tail's probability 1/2 erfc(z / sqrt 2), which keeps its relative precision."""
    tail = u if u < 0.5 else 1.0 - u  # (1 - u exact for u >= 1/2)
    t = math.sqrt(-2.0 * math.log(tail))
    z = t - (2.515517 + t * (0.802853 + t * 0.010328)) / (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308)))
    for _ in range(3):
        density = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        z += (0.5 * math.erfc(z / math.sqrt(2.0)) - tail) / density
    return -z if u < 0.5 else z


@jit
def _count_passes(k, rate, u):
    """Whether P(K <= k) > u for K ~ Poisson(rate): P(K <= k) = Q(k + 1, rate), compared in the tail that
    keeps its precision (u < 1/2: Q against u; else P(k + 1, rate) = P(K > k) against 1 - u)."""
    p, q = incomplete(k + 1.0, rate)
    return q > u if u < 0.5 else p < 1.0 - u


@jit
def poisson_quantile(rate, u, most):
    """The least k in 0..most with P(K <= k) > u for K ~ Poisson(rate) (``most`` where none is), for
    0 <= rate < inf and 0 <= u <= 1. From the Cornish-Fisher expansion of the quantile with the continuity
    correction, k = round(rate + s z + (z^2 - 1) / 6 + (z - z^3) / (72 s)) (s = sqrt(rate), z = Phi^-1(u)),
    the count is found exactly by steps of one, each deciding on the CDF itself (:func:`_count_passes`).
    Above _EXACT_RATE the start is the answer: its quantile errs by O(1 / s) of a count."""
    if u >= 1.0:
        return float(most)
    if rate == 0.0 or u == 0.0:
        return 0.0
    s = math.sqrt(rate)
    z = normal_quantile(u)
    start = math.floor(rate + s * z + (z * z - 1.0) / 6.0 + (z - z * z * z) / (72.0 * s) + 0.5)
    k = min(max(start, 0.0), float(most))
    if rate > _EXACT_RATE:
        return k
    if _count_passes(k, rate, u):
        while k > 0.0 and _count_passes(k - 1.0, rate, u):
            k -= 1.0
    else:
        while k < most and not _count_passes(k, rate, u):
            k += 1.0
    return k


@jit(error_model="numpy")
def _inverse_cdf(alpha, u, floor, out):
    """out <- max(P^-1(alpha, u), floor) itemwise (flat arrays of one size)."""
    for i in range(out.size):
        out[i] = max(quantile(np.float64(alpha[i]), np.float64(u[i])), floor)


@jit(error_model="numpy")
def _shape_grad(alpha, z, out):
    """out <- dz/dalpha at fixed u for the draws z = P^-1(alpha, u) (:func:`shape_derivative`) itemwise."""
    for i in range(out.size):
        out[i] = shape_derivative(np.float64(alpha[i]), np.float64(z[i]))


@jit(error_model="numpy")
def _special(x, which, out):
    """out <- log |Gamma(x)| (which LGAMMA; the C library's lgamma) or digamma(x) (DIGAMMA) itemwise."""
    for i in range(out.size):
        v = np.float64(x[i])
        out[i] = math.lgamma(v) if which == LGAMMA else digamma(v)


@jit(error_model="numpy")
def _poisson_draw(rate, u, most, out):
    """out <- :func:`poisson_quantile` (rate, u, most) itemwise; NaN where the rate is not in [0, inf) or u
    not in [0, 1]."""
    for i in range(out.size):
        r, v = np.float64(rate[i]), np.float64(u[i])
        if not (0.0 <= r < math.inf and 0.0 <= v <= 1.0):
            out[i] = math.nan
        else:
            out[i] = poisson_quantile(r, v, most)


_INVERSE_CDF = Entry(_inverse_cdf, alpha=array("n"), u=array("n"), floor=FLOAT, out=array("n"))
_SHAPE_GRAD = Entry(_shape_grad, alpha=array("n"), z=array("n"), out=array("n"))
_SPECIAL_ENTRY = Entry(_special, x=array("n"), which=INT, out=array("n"))
_POISSON_DRAW = Entry(_poisson_draw, rate=array("n"), u=array("n"), most=INT, out=array("n"))


def _itemwise(entry, seconds, arrays, *scalars):
    """``entry`` on the flat views of ``arrays`` (each made C-contiguous by a kernel's copy where it is not),
    then ``scalars``, then a new output of the first array's shape and dtype, in blocks on gvae's threads
    (``seconds`` an item on one); the output."""
    flat = [contiguous(a).reshape(-1) for a in arrays]
    out = np.empty(arrays[0].shape, arrays[0].dtype)
    view = out.reshape(-1)
    run_blocks(entry, lambda k, lo, hi: (*(f[lo:hi] for f in flat), *scalars, view[lo:hi]),
               threads.row_blocks(view.size, 1, seconds))
    return out


@register("gamma_inverse_cdf")
def gamma_inverse_cdf(alpha, u):
    """z = P^-1(alpha, u) (in float64), floored at the dtype's smallest normal number."""
    return _itemwise(_INVERSE_CDF, 2e-6, (alpha, u), float(np.finfo(alpha.dtype).tiny))


@register("gamma_draw_shape_grad")
def gamma_draw_shape_grad(alpha, z):
    """dz/dalpha at fixed u of the draws z = P^-1(alpha, u) (:func:`_shape_grad`), in float64."""
    return _itemwise(_SHAPE_GRAD, 1e-6, (alpha, z))


@register("gamma_special")
def gamma_special(name, x):
    """log Gamma(x) (``"lgamma"``) or digamma(x) (``"digamma"``), itemwise in x's dtype."""
    return _itemwise(_SPECIAL_ENTRY, 3e-8, (x,), _SPECIAL[name])


@register("poisson_draw")
def poisson_draw(rate, u, most):
    """Counts k ~ Poisson(rate) by the inverse CDF at the uniforms u (:func:`_poisson_draw`), rate's dtype."""
    return _itemwise(_POISSON_DRAW, 2e-7, (rate, u), most)
