// CUDA twin of ar_bernoulli_cpu.py: autoregressive Bernoulli draws,
//   z[r, i] = [u[r, i] < sigmoid(bias[r, i] + sum_{j < i} W[i, j] z[r, j])],  unit by unit.
// One warp per row: for unit i the lanes add W[i, j] z[r, j] over j < i (coalesced along W's row i), the
// sum is a butterfly shuffle, and lane 0 writes z[r, i] before the warp moves to unit i + 1 (a warp barrier
// orders the write before the next unit's reads). The sum is in double, as the CPU kernel's.
#include "cuda/common.cuh"

template <typename T>
__global__ void ar_bernoulli_draw(const T* __restrict__ bias, const T* __restrict__ W, const T* __restrict__ u,
                                  T* __restrict__ z, int m, int n) {
    const int lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    for (int r = blockIdx.x * warps + (threadIdx.x >> 5); r < m; r += gridDim.x * warps) {
        const long long row = (long long)r * n;
        for (int i = 0; i < n; ++i) {
            double acc = 0.0;
            for (int j = lane; j < i; j += 32)
                if (z[row + j] != T(0)) acc += (double)W[(long long)i * n + j];
            acc = gvae::warp_sum(acc);
            if (lane == 0) {
                const double a = (double)bias[row + i] + acc;
                z[row + i] = (double)u[row + i] < 1.0 / (1.0 + exp(-a)) ? T(1) : T(0);
            }
            __syncwarp();
        }
    }
}
