// CUDA twin of logmeanexp_cpu.py: log-mean-exp over the rows of a matrix and the normalised weights.
//
// One warp per row (8 rows per block of 256 threads), lanes along the row (coalesced): a butterfly max,
// then one pass that writes e^(l - max) and sums it, then one that scales the weights. The max skips
// NaNs (fmax), as the Numba kernel's does; a NaN then reaches the sum and every weight.
#include "cuda/common.cuh"

// logw (rows, k); out (rows,); weights (rows, k). A row whose max is -inf gives out = -inf and uniform
// weights; a max of +inf gives out = +inf and NaN weights.
template <typename T>
__global__ void log_mean_exp(const T* __restrict__ logw, T* __restrict__ out, T* __restrict__ weights,
                             int rows, int k) {
    const int lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    for (int r = blockIdx.x * warps + (threadIdx.x >> 5); r < rows; r += gridDim.x * warps) {
        const T* lr = logw + (long long)r * k;
        T* wr = weights + (long long)r * k;
        T m = -gvae::inf_<T>();
        for (int j = lane; j < k; j += 32) m = gvae::max_(m, lr[j]);
        m = gvae::warp_max(m);
        if (!gvae::isfinite_(m)) {  // uniform across the warp: no divergence
            const T w = m == -gvae::inf_<T>() ? T(1) / T(k) : gvae::nan_<T>();
            for (int j = lane; j < k; j += 32) wr[j] = w;
            if (lane == 0) out[r] = m;
            continue;
        }
        T s = T(0);
        for (int j = lane; j < k; j += 32) {
            const T e = gvae::exp_(lr[j] - m);
            wr[j] = e;
            s += e;
        }
        s = gvae::warp_sum(s);
        const T inv = T(1) / s;
        for (int j = lane; j < k; j += 32) wr[j] *= inv;  // each lane rescales what it wrote
        if (lane == 0) out[r] = m + gvae::log_(s) - gvae::log_(T(k));
    }
}
