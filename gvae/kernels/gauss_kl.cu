// CUDA twin of gauss_kl_cpu.py: KL(N(mu, diag sigma^2) || N(0, I)) per row, fused with its gradient.
//
// One warp per row (8 rows per block of 256 threads), lanes along the row (coalesced), butterfly
// shuffle for the row sum; log in T's precision.
#include "cuda/common.cuh"

// mu, sigma (m, d); out (m,); dmu = mu and dsigma = sigma - 1/sigma (m, d) when WANT_GRAD.
template <typename T, bool WANT_GRAD>
__global__ void diag_normal_kl(const T* __restrict__ mu, const T* __restrict__ sigma, T* __restrict__ out,
                               T* __restrict__ dmu, T* __restrict__ dsigma, int m, int d) {
    const int lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    for (int i = blockIdx.x * warps + (threadIdx.x >> 5); i < m; i += gridDim.x * warps) {
        const long long row = (long long)i * d;
        T acc = T(0);
        for (int j = lane; j < d; j += 32) {
            const T u = mu[row + j], s = sigma[row + j];
            acc += T(0.5) * (u * u + s * s - T(1)) - gvae::log_(s);
            if (WANT_GRAD) {
                dmu[row + j] = u;
                dsigma[row + j] = s - T(1) / s;
            }
        }
        acc = gvae::warp_sum(acc);
        if (lane == 0) out[i] = acc;
    }
}
