// CUDA twin of bernoulli_cpu.py: row sums of x*l - softplus(l) from logits, with d/dl = x - sigmoid(l)
// written in the same pass.
//
// One warp per row (8 rows per block of 256 threads): the lanes stride along the row, so loads and
// stores are coalesced, and the row sum is a butterfly shuffle; no shared memory. softplus and sigmoid
// come from one exponential e^-|l| in T's precision. The summands are all <= 0 (x in [0, 1]), so the
// sum in T loses no accuracy to cancellation.
#include "cuda/common.cuh"

// logits (m, n) and x (r, n) with m % r == 0, row i using x[i % r]; out (m,); dlogits (m, n) when
// WANT_GRAD (it is not touched otherwise).
template <typename T, bool WANT_GRAD>
__global__ void bernoulli_loglik(const T* __restrict__ logits, const T* __restrict__ x, T* __restrict__ out,
                                 T* __restrict__ dlogits, int m, int n, int r) {
    const int lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    for (int i = blockIdx.x * warps + (threadIdx.x >> 5); i < m; i += gridDim.x * warps) {
        const T* li = logits + (long long)i * n;
        const T* xi = x + (long long)(i % r) * n;
        T acc = T(0);
        for (int j = lane; j < n; j += 32) {
            const T l = li[j], xv = xi[j];
            T sp, sig;
            gvae::softplus_sigmoid(l, sp, sig);
            acc += xv * l - sp;
            if (WANT_GRAD) dlogits[(long long)i * n + j] = xv - sig;
        }
        acc = gvae::warp_sum(acc);
        if (lane == 0) out[i] = acc;
    }
}
