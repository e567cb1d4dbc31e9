// CUDA twin of categorical_cpu.py: log softmax(l)_y and softmax(l) by rows, and the gradient
// g ([c = y] - softmax(l)).
//
// One thread per row: the rows are short (a classifier's classes), so a row's loop stays in registers.
// The log-sum-exp in double, shifted by the row's maximum, as the CPU kernel.
#include "cuda/common.cuh"

// logits (m, c), row i labelled labels[i % r]; out (m,) and probs (m, c).
template <typename T>
__global__ void categorical_log_prob(const T* __restrict__ logits, const long long* __restrict__ labels,
                                     T* __restrict__ probs, T* __restrict__ out, int m, int c, int r) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < m; i += gridDim.x * blockDim.x) {
        const T* li = logits + (long long)i * c;
        T top = li[0];
        for (int j = 1; j < c; ++j) top = li[j] > top ? li[j] : top;
        double total = 0.0;
        for (int j = 0; j < c; ++j) total += exp((double)li[j] - (double)top);
        const double lse = (double)top + log(total);
        out[i] = T((double)li[labels[i % r]] - lse);
        for (int j = 0; j < c; ++j) probs[(long long)i * c + j] = T(exp((double)li[j] - lse));
    }
}

// out (m, c) = g[i] ([j = y_i] - probs[i, j]).
template <typename T>
__global__ void categorical_grad(const T* __restrict__ g, const long long* __restrict__ labels,
                                 const T* __restrict__ probs, T* __restrict__ out, int m, int c, int r) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < m; i += gridDim.x * blockDim.x) {
        const long long y = labels[i % r];
        for (int j = 0; j < c; ++j)
            out[(long long)i * c + j] = g[i] * ((j == y ? T(1) : T(0)) - probs[(long long)i * c + j]);
    }
}
