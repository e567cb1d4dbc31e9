// Conventions shared by the CUDA kernels of banded lower-triangular factors (the CUDA twins of
// band/*_cpu.py; the contract is band/__init__.py, which brings every call to these layouts):
//   L (F, K, n) C-contiguous, L[f, k, i] = L_{i, i - offs[k]}; slots with i < offs[k] are never read
//   (they may hold NaN). offs: int32 (K,), strictly increasing, offs[0] = 0, offs[K-1] < n.
//   right-hand sides and results (S, F, n) C-contiguous: b[s, f] is solved with factor f.
//
// Every kernel except band_outer adds (number of diagonal entries <= 0, checksum) into flags[0],
// flags[1] (float64, zeroed by the caller) with one atomicAdd per warp: the checksum adds up the outputs
// and the diagonals read, so any NaN or inf in the inputs reaches it; the wrappers turn the flags into
// errors.
#ifndef GVAE_BAND_COMMON_CUH
#define GVAE_BAND_COMMON_CUH

#include "cuda/common.cuh"

namespace gvae {

// Adds this thread's (bad, checksum) to flags; every lane of the warp must call it.
__device__ __forceinline__ void add_flags(double* flags, double bad, double chk) {
    bad = warp_sum(bad);
    chk = warp_sum(chk);
    if ((threadIdx.x & 31) == 0) {
        if (bad != 0.0) atomicAdd(flags, bad);
        atomicAdd(flags + 1, chk);
    }
}

}  // namespace gvae

#endif  // GVAE_BAND_COMMON_CUH
