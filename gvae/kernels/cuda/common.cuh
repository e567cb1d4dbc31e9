// Device helpers shared by the gvae CUDA kernels: maths in the precision of T, and warp reductions.
//
// No standard headers: the sources must compile under NVRTC (cupy.RawModule) as well as nvcc. The
// loader (cuda/build.py) pastes this file in place of its #include, so CuPy's kernel cache, which
// hashes the source text, sees every change of it.
#ifndef GVAE_CUDA_COMMON_CUH
#define GVAE_CUDA_COMMON_CUH

namespace gvae {

// One overload per precision, so float kernels never round-trip through double by accident.
__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float expm1_(float x) { return expm1f(x); }
__device__ __forceinline__ double expm1_(double x) { return expm1(x); }
__device__ __forceinline__ float log_(float x) { return logf(x); }
__device__ __forceinline__ double log_(double x) { return log(x); }
__device__ __forceinline__ float log1p_(float x) { return log1pf(x); }
__device__ __forceinline__ double log1p_(double x) { return log1p(x); }
__device__ __forceinline__ float tanh_(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_(double x) { return tanh(x); }
__device__ __forceinline__ float sqrt_(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt_(double x) { return sqrt(x); }
__device__ __forceinline__ float abs_(float x) { return fabsf(x); }
__device__ __forceinline__ double abs_(double x) { return fabs(x); }
// fmax ignores a NaN operand: max over a row skips NaNs (as the Numba kernels' `max` does).
__device__ __forceinline__ float max_(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double max_(double a, double b) { return fmax(a, b); }
__device__ __forceinline__ bool isfinite_(float x) { return isfinite(x); }
__device__ __forceinline__ bool isfinite_(double x) { return isfinite(x); }
template <typename T> __device__ __forceinline__ T inf_();
template <> __device__ __forceinline__ float inf_<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double inf_<double>() { return __longlong_as_double(0x7ff0000000000000LL); }
template <typename T> __device__ __forceinline__ T nan_();
template <> __device__ __forceinline__ float nan_<float>() { return __int_as_float(0x7fffffff); }
template <> __device__ __forceinline__ double nan_<double>() { return __longlong_as_double(0x7fffffffffffffffLL); }

// softplus(x) = log(1 + e^x) and sigmoid(x) from the one exponential e^-|x| (never overflows).
template <typename T>
__device__ __forceinline__ void softplus_sigmoid(T x, T& sp, T& sig) {
    const T e = exp_(-abs_(x));
    const T inv = T(1) / (T(1) + e);
    sp = max_(x, T(0)) + log1p_(e);
    sig = x >= T(0) ? inv : e * inv;
}

constexpr unsigned FULL_MASK = 0xffffffffu;

// Butterfly reductions: every lane of the warp gets the result.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = max_(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); the result is valid in
// thread 0. `scratch` holds at least 32 entries of shared memory.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    v = threadIdx.x < warps ? scratch[threadIdx.x] : T(0);
    if (warp == 0) v = warp_sum(v);
    return v;
}

}  // namespace gvae

#endif  // GVAE_CUDA_COMMON_CUH
