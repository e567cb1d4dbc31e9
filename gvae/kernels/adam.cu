// CUDA twin of adam_cpu.py: one fused Adam pass over flat buffers, the running average of the parameters,
// and the squared norm.
#include "cuda/common.cuh"

// In place, grid-stride over n: m <- b1 m + a1 g';  v <- b2 v + a2 g'^2;  p <- p - rate m / (sqrt(v) + eps_hat)
// with g' = scale * g. rate and eps_hat carry the bias corrections (computed in float64 and rounded to T,
// as the CPU kernel does). With `averaged`, the Polyak average's step on the new p too, a <- d a + e p
// (average_update's arithmetic); without it a is never read.
template <typename T>
__device__ void adam_pass(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                          T* __restrict__ a, T rate, T eps_hat, T b1, T b2, T a1, T a2, T scale, T d, T e,
                          int averaged, long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T gi = scale * g[i];
        const T mi = b1 * m[i] + a1 * gi;
        const T vi = b2 * v[i] + a2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const T pi = p[i] - rate * mi / (gvae::sqrt_(vi) + eps_hat);
        p[i] = pi;
        if (averaged) a[i] = d * a[i] + e * pi;
    }
}

// The pass with the constants from the host.
template <typename T>
__global__ void adam_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                            T* __restrict__ a, T rate, T eps_hat, T b1, T b2, T a1, T a2, T scale, T d, T e,
                            int averaged, long long n) {
    adam_pass(p, g, m, v, a, rate, eps_hat, b1, b2, a1, a2, scale, d, e, averaged, n);
}

// The pass with the step's constants and its guard on the device, so that a CUDA graph can replay it:
// hyper = (rate, eps_hat, clip) in float64 (written before each replay); the gradient scaled by
// clip / |g| where |g| = sqrt(norm2[0]) exceeds clip (as the host computes it, in float64); nothing
// written unless norm2[0] and loss[0] are finite (a step the trainer skips).
template <typename T>
__global__ void adam_update_guarded(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                                    T* __restrict__ v, T* __restrict__ a, const double* __restrict__ hyper,
                                    const double* __restrict__ norm2, const T* __restrict__ loss, T b1, T b2, T a1,
                                    T a2, T d, T e, int averaged, long long n) {
    const double n2 = norm2[0];
    if (!(isfinite(n2) && isfinite((double)loss[0]))) return;
    const double norm = sqrt(n2), clip = hyper[2];
    adam_pass(p, g, m, v, a, (T)hyper[0], (T)hyper[1], b1, b2, a1, a2, (T)(norm > clip ? clip / norm : 1.0), d, e,
              averaged, n);
}

// In place, grid-stride over n: a <- d a + e p, with d the decay and e = 1 - d (rounded to T on the host).
template <typename T>
__global__ void average_update(T* __restrict__ a, const T* __restrict__ p, T d, T e, long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) a[i] = d * a[i] + e * p[i];
}

// Stage 1 of sum(g^2): each thread sums its grid-stride elements in T (like the CPU kernel's chunks in
// the array's precision), each block adds its threads in float64 and writes partial[blockIdx.x].
template <typename T>
__global__ void sum_squares_partial(const T* __restrict__ g, double* __restrict__ partial, long long n) {
    __shared__ double scratch[32];
    const long long stride = (long long)gridDim.x * blockDim.x;
    T acc = T(0);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) acc += g[i] * g[i];
    const double s = gvae::block_sum((double)acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Stage 2: one block adds the `count` partials in a fixed order (deterministic) into total[0].
__global__ void sum_partials(const double* __restrict__ partial, double* __restrict__ total, int count) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    const double s = gvae::block_sum(acc, scratch);
    if (threadIdx.x == 0) total[0] = s;
}
