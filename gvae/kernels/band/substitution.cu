// CUDA twin of substitution_cpu.py: forward and backward substitution with a banded factor,
// x = L^{-1} b and x = L^{-T} b (layouts and flags: band_common.cuh).
//
// One thread per (factor, sample) pair, sequential along n. Threads are numbered factor-major
// (t = f * S + s), so the threads of a warp share a factor whenever S >= 32 and their reads of L are
// broadcasts. Each thread reads and writes its own row of length n: in the (S, F, n) layout consecutive
// threads are n elements apart, so one warp-wide load touches 32 sectors; every later element of those
// sectors (8 floats, 4 doubles) is then an L1 hit. We keep this direct layout rather than staging tiles
// through shared memory in an interleaved order: the pair counts gvae produces (batch x samples,
// 1e2..1e4) use a few percent of the GPU's thread slots, so the per-thread working set (one 32-byte
// sector per stream: b, x and the K diagonals) fits L1 comfortably and each sector still comes from
// DRAM once; staging would add shared-memory round trips and barriers around a recurrence whose
// look-back (offs[K-1]) is arbitrary. The history x_m (|i - m| = o_k >= 2) is read back from the
// thread's own output row (L1); the offset-1 neighbour, present in the chain, grid and extended grid,
// stays in a register, so the serial dependency per element is one fused multiply-add. Segments of
// steps with a fixed number of active diagonals (as in substitution_cpu's _solve_seg) keep the inner
// loops free of edge tests. examples/bench_cuda.py measures the resulting GB/s against the device's
// copy bandwidth.
#include "band_common.cuh"

// Step j = 0 .. n-1 solves row i = j (L x = b) or i = n-1-j (TRANSPOSED: L^T x = b):
//   x_i = m0_i b_i - sum_{k >= 1, 0 <= m < n} (L_{i,m} m0_i) x_m,   m = i - o_k (i + o_k), m0_i = 1 / L_ii,
// the products with m0 rounded as substitution_cpu's _prep does. Row m was solved o_k steps earlier; the
// entry linking rows i and m lies in column max(i, m) of diagonal k. Diagonal k has a term from step
// o_k on, so steps [o_p, o_{p+1}) have exactly diagonals 1..p.
template <typename T, bool TRANSPOSED>
__global__ void band_solve(const T* __restrict__ L, const int* __restrict__ offs, const T* __restrict__ b,
                           T* __restrict__ x, int F, int K, int S, int n, double* __restrict__ flags) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    double bad = 0.0, chk_diag = 0.0;
    T chk = T(0);
    if (t < F * S) {
        const int f = t / S, s = t - f * S;
        const T* Lf = L + (long long)f * K * n;
        const long long row = ((long long)s * F + f) * n;
        const T* bv = b + row;
        T* xv = x + row;
        const bool has1 = K > 1 && offs[1] == 1;  // offset 1 kept in a register
        const int k0 = has1 ? 2 : 1;
        const bool diag = s == 0;                  // one thread per factor checks its diagonal
        T prev = T(0);                             // x of the previous step's row
        int j0 = 0;
        for (int p = 0; p < K; ++p) {              // steps j0..j1-1: diagonals 1..p have a term
            const int j1 = p + 1 < K ? min(offs[p + 1], n) : n;
            for (int j = j0; j < j1; ++j) {
                const int i = TRANSPOSED ? n - 1 - j : j;
                const T d = Lf[i];
                const T m0 = T(1) / d;
                T acc = m0 * bv[i];
                for (int k = k0; k <= p; ++k) {
                    const int m = TRANSPOSED ? i + offs[k] : i - offs[k];
                    acc -= (Lf[(long long)k * n + (TRANSPOSED ? m : i)] * m0) * xv[m];
                }
                if (has1 && p >= 1) acc -= (Lf[n + (TRANSPOSED ? i + 1 : i)] * m0) * prev;
                prev = acc;
                xv[i] = acc;
                chk += acc;
                if (diag) {
                    bad += d <= T(0) ? 1.0 : 0.0;
                    chk_diag += (double)d;
                }
            }
            j0 = j1;
        }
    }
    gvae::add_flags(flags, bad, chk_diag + (double)chk);
}
