// CUDA twin of cholesky_cpu.py: the Cholesky factor of a symmetric positive definite band matrix and its
// VJP, on the full band (0, 1, ..., w), w = K - 1 (layouts and flags: band_common.cuh; the recurrences:
// cholesky_cpu.py). One thread per matrix, grid-stride, sequential along the rows: the entry (i, j)
// needs every entry of rows i and j left of it, so within a matrix the work is a serial chain of
// O(w^2)-long dot products; the batches the merge factors (samples x data points, 1e2..1e4 matrices of
// d ~ 10..100) give each thread its own matrix. Sums in float64 as on the CPU.
#include "band_common.cuh"

// L (F, K, n) from A (F, K, n). A pivot that is not > 0 stops the matrix with NaN in its rows from that
// one on and counts one in flags[0]; the checksum adds up the entries written.
template <typename T>
__global__ void band_cholesky(const T* __restrict__ A, T* __restrict__ L, int F, int K, int n,
                              double* __restrict__ flags) {
    double bad = 0.0, chk = 0.0;
    for (int f = blockIdx.x * blockDim.x + threadIdx.x; f < F; f += gridDim.x * blockDim.x) {
        const T* a = A + (long long)f * K * n;
        T* l = L + (long long)f * K * n;
        for (int k = 1; k < K; ++k)
            for (int i = 0; i < k && i < n; ++i) l[(long long)k * n + i] = T(0);
        for (int i = 0; i < n; ++i) {
            const int lo = i - K + 1 > 0 ? i - K + 1 : 0;
            bool failed = false;
            for (int j = lo; j <= i; ++j) {
                double s = (double)a[(long long)(i - j) * n + i];
                for (int t = lo; t < j; ++t)
                    s -= (double)l[(long long)(i - t) * n + i] * (double)l[(long long)(j - t) * n + j];
                double v;
                if (j < i) {
                    v = s / (double)l[j];
                } else if (s > 0.0) {
                    v = sqrt(s);
                } else {
                    for (int m = i; m < n; ++m)  // rows i.. (every existing slot) are NaN
                        for (int k = 0; k < K && k <= m; ++k) l[(long long)k * n + m] = gvae::nan_<T>();
                    bad += 1.0;
                    failed = true;
                    break;
                }
                l[(long long)(i - j) * n + i] = (T)v;
                chk += v;
            }
            if (failed) break;
        }
    }
    gvae::add_flags(flags, bad, chk);
}

// gA (F, K, n) from L and G = dloss/dL (F, K, n) float64, which is overwritten as the adjoint
// accumulator: the steps of band_cholesky undone in reverse order. Flags: L's diagonal entries <= 0;
// the checksum adds up gA and L's diagonal.
template <typename T>
__global__ void band_cholesky_grad(const T* __restrict__ L, double* __restrict__ G, T* __restrict__ gA, int F,
                                   int K, int n, double* __restrict__ flags) {
    double bad = 0.0, chk = 0.0;
    for (int f = blockIdx.x * blockDim.x + threadIdx.x; f < F; f += gridDim.x * blockDim.x) {
        const T* l = L + (long long)f * K * n;
        double* g = G + (long long)f * K * n;
        T* ga = gA + (long long)f * K * n;
        for (int k = 1; k < K; ++k)
            for (int i = 0; i < k && i < n; ++i) ga[(long long)k * n + i] = T(0);
        for (int i = 0; i < n; ++i) {
            bad += l[i] <= T(0) ? 1.0 : 0.0;
            chk += (double)l[i];
        }
        for (int i = n - 1; i >= 0; --i) {
            const int lo = i - K + 1 > 0 ? i - K + 1 : 0;
            for (int j = i; j >= lo; --j) {
                const double ljj = (double)l[j];
                double sbar;
                if (j == i) {
                    sbar = 0.5 * g[i] / ljj;
                } else {
                    sbar = g[(long long)(i - j) * n + i] / ljj;
                    g[j] -= sbar * (double)l[(long long)(i - j) * n + i];
                }
                ga[(long long)(i - j) * n + i] = (T)sbar;
                chk += sbar;
                for (int t = lo; t < j; ++t) {
                    g[(long long)(i - t) * n + i] -= sbar * (double)l[(long long)(j - t) * n + j];
                    g[(long long)(j - t) * n + j] -= sbar * (double)l[(long long)(i - t) * n + i];
                }
            }
        }
    }
    gvae::add_flags(flags, bad, chk);
}
