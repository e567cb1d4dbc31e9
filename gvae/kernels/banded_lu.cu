// CUDA twin of banded_lu_cpu.py: LU factorisation with partial pivoting of general band matrices and the
// solve with it (LAPACK's gbsv), one thread a system, in the arrays' dtype. The storage and the steps are
// the Numba kernel's: ab (F, l + u + 1, n) in SciPy's banded storage, the factor in work (F, 2 l + u + 1, n)
// with its pivot rows in piv, b (F, n, k) overwritten by the solution.
#include "cuda/common.cuh"

// info's codes, with check, for NaN or inf in a system's ab or b (banded_lu_cpu.NOT_FINITE_AB, NOT_FINITE_B)
constexpr long long NOT_FINITE_AB = -1, NOT_FINITE_B = -2;

template <typename T>
__global__ void banded_lu_solve(const T* __restrict__ ab, T* __restrict__ b, T* __restrict__ work,
                                long long* __restrict__ piv, long long* __restrict__ info, int lower, int upper,
                                int check, int n, int k, long long count) {
    const int kv = lower + upper, rows = 2 * lower + upper + 1;
    for (long long f = blockIdx.x * (long long)blockDim.x + threadIdx.x; f < count;
         f += (long long)gridDim.x * blockDim.x) {
        const T* a = ab + f * (long long)(kv + 1) * n;
        T* w = work + f * (long long)rows * n;
        T* x = b + f * (long long)n * k;
        long long* p = piv + f * (long long)n;
        for (int r = 0; r < lower; ++r)
            for (int j = 0; j < n; ++j) w[r * n + j] = T(0);
        T scan = T(0);  // a sum of v * 0: NaN exactly where some v is NaN or inf, and it cannot overflow
        for (int r = 0; r <= kv; ++r) {
            for (int j = 0; j < n; ++j) {
                const T v = a[r * n + j];
                w[(lower + r) * n + j] = v;
                scan += v * T(0);
            }
        }
        if (check) {
            if (scan != scan) {
                info[f] = NOT_FINITE_AB;
                continue;
            }
            for (int i = 0; i < n * k; ++i) scan += x[i] * T(0);
            if (scan != scan) {
                info[f] = NOT_FINITE_B;
                continue;
            }
        }
        long long failed = 0;
        int last = 0;  // the last column that an interchange so far has reached
        for (int j = 0; j < n; ++j) {
            const int below = min(lower, n - 1 - j);
            int step = 0;
            T size = gvae::abs_(w[kv * n + j]);
            for (int r = 1; r <= below; ++r) {
                if (gvae::abs_(w[(kv + r) * n + j]) > size) {
                    step = r;
                    size = gvae::abs_(w[(kv + r) * n + j]);
                }
            }
            p[j] = j + step;
            if (w[(kv + step) * n + j] == T(0)) {
                if (!failed) failed = j + 1;
                continue;
            }
            last = max(last, min(j + upper + step, n - 1));
            if (step) {
                for (int c = j; c <= last; ++c) {
                    const T t = w[(kv + j - c) * n + c];
                    w[(kv + j - c) * n + c] = w[(kv + j + step - c) * n + c];
                    w[(kv + j + step - c) * n + c] = t;
                }
            }
            if (below) {
                const T inverse = T(1) / w[kv * n + j];
                for (int r = 1; r <= below; ++r) w[(kv + r) * n + j] *= inverse;
                for (int c = j + 1; c <= last; ++c) {
                    const T t = w[(kv + j - c) * n + c];
                    if (t != T(0))
                        for (int r = 1; r <= below; ++r) w[(kv + j + r - c) * n + c] -= w[(kv + r) * n + j] * t;
                }
            }
        }
        info[f] = failed;
        if (failed) continue;
        for (int j = 0; j < n; ++j) {  // x <- L^-1 P x
            const long long q = p[j];
            if (q != j) {
                for (int c = 0; c < k; ++c) {
                    const T t = x[j * k + c];
                    x[j * k + c] = x[q * k + c];
                    x[q * k + c] = t;
                }
            }
            const int below = min(lower, n - 1 - j);
            for (int r = 1; r <= below; ++r) {
                const T m = w[(kv + r) * n + j];
                for (int c = 0; c < k; ++c) x[(j + r) * k + c] -= m * x[j * k + c];
            }
        }
        for (int j = n - 1; j >= 0; --j) {  // x <- U^-1 x, U of bandwidth l + u
            const T d = w[kv * n + j];
            for (int c = 0; c < k; ++c) x[j * k + c] /= d;
            for (int i = max(0, j - kv); i < j; ++i) {
                const T m = w[(kv + i - j) * n + j];
                for (int c = 0; c < k; ++c) x[i * k + c] -= m * x[j * k + c];
            }
        }
    }
}
