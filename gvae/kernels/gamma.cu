// CUDA twin of gamma_cpu.py's gamma quantile, the derivative of a gamma draw in its shape and the Poisson
// draws: the same series, continued fraction, starts and steps, one thread an item, all in double whatever
// the arrays' dtype.
#include "cuda/common.cuh"

namespace gammak {

constexpr double EPS = 1e-16;        // the series' and the continued fraction's relative stopping point
constexpr double TINY = 1e-300;      // the continued fraction's guard against a zero denominator
constexpr double TERMS = 100000.0;   // at most this many terms, plus WIDTH sqrt(a) (gamma_cpu._terms)
constexpr double WIDTH = 60.0;
constexpr double EXACT_RATE = 1e9;   // Poisson counts found exactly up to this rate (gamma_cpu._EXACT_RATE)

__device__ __forceinline__ long long terms(double a) { return (long long)TERMS + (long long)(WIDTH * sqrt(a)); }

// gamma_cpu.digamma for x > 0: the recurrence up to x >= 10, then the asymptotic series.
__device__ double digamma(double x) {
    double total = 0.0;
    while (x < 10.0) {
        total -= 1.0 / x;
        x += 1.0;
    }
    const double r = 1.0 / (x * x);
    const double series = r * (1.0 / 12 - r * (1.0 / 120 - r * (1.0 / 252 - r * (1.0 / 240 - r * (1.0 / 132 - r * (
        691.0 / 32760 - r / 12.0))))));
    return total + log(x) - 0.5 / x - series;
}

// gamma_cpu._log_front: log(x^a e^-x / Gamma(a)), through Stirling's series from a = 10 on.
__device__ double log_front(double a, double x) {
    if (a < 10.0) return a * log(x) - x - lgamma(a);
    const double t = (x - a) / a;
    double total;
    if (fabs(t) < 0.1) {
        double power = t * t;
        total = 0.0;
        for (int k = 2; k < 22; ++k) {
            total += (k % 2 == 1) ? power / k : -power / k;
            power *= t;
        }
    } else {
        total = log(x / a) - t;
    }
    const double r = 1.0 / (a * a);
    const double remainder = (1.0 / 12 - r * (1.0 / 360 - r * (1.0 / 1260 - r * (1.0 / 1680 - r * (1.0 / 1188 - r * (
        691.0 / 360360 - r / 156.0)))))) / a;
    return 0.5 * log(a / (2.0 * 3.141592653589793)) + a * total - remainder;
}

// gamma_cpu._incomplete: P(a, x), Q(a, x), log P(a, x) and log(x^a e^-x / Gamma(a)) for a > 0, x >= 0.
__device__ void incomplete(double a, double x, double& p, double& q, double& log_p, double& front) {
    if (x <= 0.0) {
        p = 0.0;
        q = 1.0;
        log_p = front = -gvae::inf_<double>();
        return;
    }
    if (x == gvae::inf_<double>()) {
        p = 1.0;
        q = 0.0;
        log_p = 0.0;
        front = -gvae::inf_<double>();
        return;
    }
    front = log_front(a, x);
    const long long most = terms(a);
    if (x < a + 1.0) {
        double term = 1.0 / a, total = term, shape = a;
        for (long long n = 0; n < most; ++n) {
            shape += 1.0;
            term *= x / shape;
            total += term;
            if (term < total * EPS) break;
        }
        p = total * exp(front);
        q = 1.0 - p;
        log_p = log(total) + front;
        return;
    }
    double b = x + 1.0 - a, c = 1.0 / TINY, d = 1.0 / b, h = d;
    for (long long i = 1; i < most; ++i) {
        const double an = -(double)i * ((double)i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < TINY) d = TINY;
        c = b + an / c;
        if (fabs(c) < TINY) c = TINY;
        d = 1.0 / d;
        const double delta = d * c;
        h *= delta;
        if (fabs(delta - 1.0) < EPS) break;
    }
    q = exp(front) * h;
    p = 1.0 - q;
    log_p = log1p(-q);
}

// gamma_cpu._start: a first guess of P^-1(a, u).
__device__ double quantile_start(double a, double u) {
    if (a > 1.0) {
        const double tail = u < 0.5 ? u : 1.0 - u;
        const double t = sqrt(-2.0 * log(tail));
        double normal = t - (2.30753 + 0.27061 * t) / (1.0 + (0.99229 + 0.04481 * t) * t);
        if (u < 0.5) normal = -normal;
        const double root = 1.0 - 1.0 / (9.0 * a) + normal / (3.0 * sqrt(a));
        if (root > 0.0) return a * root * root * root;
        return exp((log(u) + lgamma(a + 1.0)) / a);
    }
    const double t = 1.0 - a * (0.253 + 0.12 * a);
    if (u < t) return exp((log(u) - log(t)) / a);
    return 1.0 - log(1.0 - (u - t) / (1.0 - t));
}

// gamma_cpu.quantile: P^-1(a, u) by Halley's steps.
__device__ double quantile(double a, double u) {
    if (!(a > 0.0) || !(u >= 0.0 && u <= 1.0)) return gvae::nan_<double>();
    if (u == 0.0) return 0.0;
    if (u == 1.0) return gvae::inf_<double>();
    const bool upper = u >= 0.5;
    double x = quantile_start(a, u);
    const double log_u = log(u);
    double previous = gvae::inf_<double>();
    for (int k = 0; k < 100; ++k) {
        if (x == 0.0) return 0.0;
        double p, q, log_p, front;
        incomplete(a, x, p, q, log_p, front);
        const double log_x = log(x);
        double step = 0.0, relative;
        if (upper) {
            const double density = exp(front - log_x);
            if (density == 0.0 || !isfinite(density)) break;
            step = ((1.0 - u) - q) / density;
            step = step / (1.0 - 0.5 * fmin(1.0, step * ((a - 1.0) / x - 1.0)));
            relative = step / x;
        } else {
            const double slope = exp(front - log_p);
            relative = (log_p - log_u) / slope;
            relative = relative / (1.0 - 0.5 * fmin(1.0, relative * (a - x - slope)));
        }
        if (fabs(relative) < 1e-8 && fabs(relative) > 0.5 * previous) break;
        previous = fabs(relative);
        if (upper) {
            const double last = x;
            x -= step;
            if (x <= 0.0) x = 0.5 * last;
        } else {
            x *= exp(-fmax(fmin(relative, 50.0), -50.0));
        }
        if (fabs(relative) <= 1e-7) break;
    }
    return x;
}

// gamma_cpu.shape_derivative: dx/da at fixed P(a, x).
__device__ double shape_derivative(double a, double x) {
    if (!(a > 0.0) || !(x >= 0.0 && x < gvae::inf_<double>())) return gvae::nan_<double>();
    if (x == 0.0) return 0.0;
    const double log_x = log(x);
    const long long most = terms(a);
    if (x < a + 1.0) {
        double term = 1.0 / a, psi = digamma(a + 1.0), shape = a;
        double total = term * (log_x - psi), size = term * (fabs(log_x) + fabs(psi));
        for (long long n = 0; n < most; ++n) {
            shape += 1.0;
            psi += 1.0 / shape;
            term *= x / shape;
            const double part = term * (log_x - psi);
            total += part;
            size += fabs(part);
            if (term * (fabs(log_x) + fabs(psi)) < size * EPS) break;
        }
        return -x * total;
    }
    double b = x + 1.0 - a, c = 1.0 / TINY, dc = 0.0, d = 1.0 / b, dd = d * d, h = d, dh = dd;
    for (long long i = 1; i < most; ++i) {
        const double fi = (double)i, an = -fi * (fi - a);
        b += 2.0;
        double den = an * d + b, dden = fi * d + an * dd - 1.0;
        if (fabs(den) < TINY) {
            den = TINY;
            dden = 0.0;
        }
        const double c_next = b + an / c;
        dc = -1.0 + fi / c - an * dc / (c * c);
        c = c_next;
        if (fabs(c) < TINY) {
            c = TINY;
            dc = 0.0;
        }
        d = 1.0 / den;
        dd = -dden * d * d;
        const double delta = d * c, d_delta = dd * c + d * dc;
        dh = dh * delta + h * d_delta;
        h *= delta;
        if (fabs(delta - 1.0) < EPS && fabs(h * d_delta) <= EPS * fabs(dh)) break;
    }
    return x * (h * (log_x - digamma(a)) + dh);
}

// gamma_cpu.normal_quantile for 0 < u < 1.
__device__ double normal_quantile(double u) {
    const double tail = u < 0.5 ? u : 1.0 - u;
    const double t = sqrt(-2.0 * log(tail));
    double z = t - (2.515517 + t * (0.802853 + t * 0.010328)) / (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308)));
    for (int k = 0; k < 3; ++k) {
        const double density = exp(-0.5 * z * z) / sqrt(2.0 * 3.141592653589793);
        z += (0.5 * erfc(z / sqrt(2.0)) - tail) / density;
    }
    return u < 0.5 ? -z : z;
}

__device__ bool count_passes(double k, double rate, double u) {
    double p, q, log_p, front;
    incomplete(k + 1.0, rate, p, q, log_p, front);
    return u < 0.5 ? q > u : p < 1.0 - u;
}

// gamma_cpu.poisson_quantile.
__device__ double poisson_quantile(double rate, double u, double most) {
    if (u >= 1.0) return most;
    if (rate == 0.0 || u == 0.0) return 0.0;
    const double s = sqrt(rate), z = normal_quantile(u);
    const double start = floor(rate + s * z + (z * z - 1.0) / 6.0 + (z - z * z * z) / (72.0 * s) + 0.5);
    double k = fmin(fmax(start, 0.0), most);
    if (rate > EXACT_RATE) return k;
    if (count_passes(k, rate, u)) {
        while (k > 0.0 && count_passes(k - 1.0, rate, u)) k -= 1.0;
    } else {
        while (k < most && !count_passes(k, rate, u)) k += 1.0;
    }
    return k;
}

}  // namespace gammak

// out <- max(P^-1(alpha, u), floor), itemwise (n items).
template <typename T>
__global__ void gamma_inverse_cdf(const T* __restrict__ alpha, const T* __restrict__ u, T* __restrict__ out,
                                  double floor_, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        const double x = gammak::quantile(double(alpha[i]), double(u[i]));
        out[i] = T(x < floor_ ? floor_ : x);  // (NaN stays NaN)
    }
}

// out <- dz/dalpha at fixed u of the draws z = P^-1(alpha, u), itemwise (n items).
template <typename T>
__global__ void gamma_shape_grad(const T* __restrict__ alpha, const T* __restrict__ z, T* __restrict__ out,
                                 long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = T(gammak::shape_derivative(double(alpha[i]), double(z[i])));
}

// out <- the least k in 0..most with P(K <= k) > u for K ~ Poisson(rate), itemwise (n items); NaN where the
// rate is not in [0, inf) or u not in [0, 1].
template <typename T>
__global__ void poisson_draw(const T* __restrict__ rate, const T* __restrict__ u, T* __restrict__ out,
                             double most, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const double r = double(rate[i]), v = double(u[i]);
        out[i] = (r >= 0.0 && r < gvae::inf_<double>() && v >= 0.0 && v <= 1.0) ? T(gammak::poisson_quantile(r, v, most))
                                                                    : gvae::nan_<T>();
    }
}
