// CUDA twin of mmd_cpu.py: the MMD^2 V-statistic of z (B, d) and y (M, d) with an IMQ or RBF kernel,
// fused with its gradient with respect to z.
//
// One thread per row i < max(B, M), grid-stride: row i of z against every z_j and y_j (its terms and
// its gradient row), row i of y against every y_j; the per-row sums go to parts (float64), which the
// launcher adds up. O((B + M) d) per thread: meant for the batch sizes of training (B, M ~ 100-1000).
#include "cuda/common.cuh"

// (k, dk/dr^2) of C / (C + r^2) (IMQ) or exp(-r^2 / C) (RBF), in float64.
template <bool RBF>
__device__ __forceinline__ double mmd_k(double r2, double C, double& dk) {
    if (RBF) {
        const double k = exp(-r2 / C);
        dk = -k / C;
        return k;
    }
    const double k = C / (C + r2);
    dk = -k * k / C;
    return k;
}

// sum_j k(a_i, x_j); with GRAD, w * sum_j dk/da_i added into gi (d float64).
template <typename T, bool RBF, bool GRAD>
__device__ double mmd_row(const T* __restrict__ a, int i, const T* __restrict__ x, int rows, int d, double C,
                          double w, double* __restrict__ gi) {
    const long long ai = (long long)i * d;
    double total = 0.0;
    for (int j = 0; j < rows; ++j) {
        const long long xj = (long long)j * d;
        double r2 = 0.0;
        for (int c = 0; c < d; ++c) {
            const double t = (double)a[ai + c] - (double)x[xj + c];
            r2 += t * t;
        }
        double dk;
        total += mmd_k<RBF>(r2, C, dk);
        if (GRAD) {
            const double s = 2.0 * w * dk;  // d r^2 / d a_i = 2 (a_i - x_j)
            for (int c = 0; c < d; ++c)
                gi[c] += s * ((double)a[ai + c] - (double)x[xj + c]);
        }
    }
    return total;
}

// parts (max(B, M),) float64; grad (B, d) written when GRAD, accumulated in scratch (B, d) float64.
template <typename T, bool RBF, bool GRAD>
__global__ void mmd(const T* __restrict__ z, const T* __restrict__ y, int B, int M, int d, double C,
                    double* __restrict__ parts, T* __restrict__ grad, double* __restrict__ scratch) {
    const int rows = B > M ? B : M;
    const double bb = (double)B * B, bm = (double)B * M, mm = (double)M * M;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < rows; i += gridDim.x * blockDim.x) {
        double acc = 0.0;
        if (i < B) {
            double* gi = scratch + (long long)i * d;
            if (GRAD)
                for (int c = 0; c < d; ++c) gi[c] = 0.0;
            acc += mmd_row<T, RBF, GRAD>(z, i, z, B, d, C, 2.0 / bb, gi) / bb;
            acc -= 2.0 * mmd_row<T, RBF, GRAD>(z, i, y, M, d, C, -2.0 / bm, gi) / bm;
            if (GRAD)
                for (int c = 0; c < d; ++c) grad[(long long)i * d + c] = (T)gi[c];
        }
        if (i < M) acc += mmd_row<T, RBF, false>(y, i, y, M, d, C, 0.0, nullptr) / mm;
        parts[i] = acc;
    }
}
