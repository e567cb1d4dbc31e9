// CUDA twin of logdet_cpu.py: log det L = sum_i log L_ii per factor (layouts and flags:
// band_common.cuh). One warp per factor, lanes along the diagonal.
#include "band_common.cuh"

// out[f] = sum_i log L[f, 0, i]: logs in T's precision, summed in float64. Flags: the diagonal's
// entries <= 0 and the outputs.
template <typename T>
__global__ void band_logdet(const T* __restrict__ L, T* __restrict__ out, int F, int K, int n,
                            double* __restrict__ flags) {
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    double bad = 0.0, chk = 0.0;
    for (int f = blockIdx.x * warps + (threadIdx.x >> 5); f < F; f += gridDim.x * warps) {
        const T* d = L + (long long)f * K * n;
        double acc = 0.0;
        for (int i = lane; i < n; i += 32) {
            const T v = d[i];
            bad += v <= T(0) ? 1.0 : 0.0;
            acc += (double)gvae::log_(v);
        }
        acc = gvae::warp_sum(acc);
        if (lane == 0) {
            out[f] = (T)acc;
            chk += acc;
        }
    }
    gvae::add_flags(flags, bad, chk);
}
