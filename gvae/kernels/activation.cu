// CUDA twin of activation_cpu.py: bias + activation fused, forward in place and backward from the output.
//
// Templated on the float type T and on the activation A (one specialisation each, like the Numba
// kernels): the inner loops have no branch on the activation, and the activation's own selects
// (relu, elu, sigmoid) compile to predicated moves. act'(.) is read off the output y = act(h + b).
// Maths in T's precision (expf/log1pf/tanhf for float).
#include "cuda/common.cuh"

namespace gvae {

// enum Activation { LINEAR = 0, RELU = 1, ... } is not written here: activation_cuda.py generates it
// from the table in activations.py (the one list of the codes) and the loader puts it before this text.
// An activation added there without a specialisation here fails to compile (Act<T, code> incomplete).
template <typename T, int A> struct Act;

template <typename T> struct Act<T, LINEAR> {
    static __device__ __forceinline__ T f(T x) { return x; }
    static __device__ __forceinline__ T df(T) { return T(1); }
};
template <typename T> struct Act<T, RELU> {
    static __device__ __forceinline__ T f(T x) { return x < T(0) ? T(0) : x; }  // NaN propagates
    static __device__ __forceinline__ T df(T y) { return y > T(0) ? T(1) : T(0); }
};
template <typename T> struct Act<T, ELU> {
    static __device__ __forceinline__ T f(T x) {
        const T neg = expm1_(x < T(0) ? x : T(0));
        return x > T(0) ? x : neg;
    }
    static __device__ __forceinline__ T df(T y) { return y > T(0) ? T(1) : y + T(1); }
};
template <typename T> struct Act<T, TANH> {
    static __device__ __forceinline__ T f(T x) { return tanh_(x); }
    static __device__ __forceinline__ T df(T y) { return T(1) - y * y; }
};
template <typename T> struct Act<T, SOFTPLUS> {
    static __device__ __forceinline__ T f(T x) {
        T sp, sig;
        softplus_sigmoid(x, sp, sig);
        return sp;
    }
    // y = softplus(x): act'(x) = sigmoid(x) = 1 - e^-y
    static __device__ __forceinline__ T df(T y) { return -expm1_(-max_(y, T(0))); }
};
template <typename T> struct Act<T, SIGMOID> {
    static __device__ __forceinline__ T f(T x) {
        T sp, sig;
        softplus_sigmoid(x, sp, sig);
        return sig;
    }
    static __device__ __forceinline__ T df(T y) { return y * (T(1) - y); }
};

}  // namespace gvae

// In place: h[i, j] <- act(h[i, j] + b[j]) for h (m, n) C-contiguous. Block (bx, by): threads in x run
// along a row (coalesced), blockIdx.x * bx + threadIdx.x is the column; rows stride by gridDim.y * by.
template <typename T, int A>
__global__ void bias_act_forward(T* __restrict__ h, const T* __restrict__ b, int m, int n) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    const T bj = b[j];
    for (int i = blockIdx.y * blockDim.y + threadIdx.y; i < m; i += gridDim.y * blockDim.y) {
        const long long at = (long long)i * n + j;
        h[at] = gvae::Act<T, A>::f(h[at] + bj);
    }
}

// gh <- g * act'(.) from y, and the column sums of gh over this block's rows: block (32, 8), one column
// per thread in x; thread rows stride by gridDim.y * 8. With gridDim.y == 1 the sums go straight to
// `colsum` (the bias gradient, n entries); otherwise to row blockIdx.y of `colsum` (gridDim.y, n), which
// column_sum adds up in a fixed order (deterministic, no atomics).
template <typename T, int A>
__global__ void bias_act_backward(const T* __restrict__ g, const T* __restrict__ y, T* __restrict__ gh,
                                  T* __restrict__ colsum, int m, int n) {
    __shared__ T part[8][33];
    const int j = blockIdx.x * 32 + threadIdx.x;
    T acc = T(0);
    if (j < n) {
        for (int i = blockIdx.y * 8 + threadIdx.y; i < m; i += gridDim.y * 8) {
            const long long at = (long long)i * n + j;
            const T v = g[at] * gvae::Act<T, A>::df(y[at]);
            gh[at] = v;
            acc += v;
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < n) {
        T s = part[0][threadIdx.x];
#pragma unroll
        for (int r = 1; r < 8; ++r) s += part[r][threadIdx.x];
        colsum[(long long)blockIdx.y * n + j] = s;
    }
}

// out[j] = sum_r part[r, j] for part (rows, n), in order r = 0, 1, ...
template <typename T>
__global__ void column_sum(const T* __restrict__ part, T* __restrict__ out, int rows, int n) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    T s = T(0);
    for (int r = 0; r < rows; ++r) s += part[(long long)r * n + j];
    out[j] = s;
}
