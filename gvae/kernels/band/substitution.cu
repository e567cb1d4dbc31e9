// CUDA twin of substitution_cpu.py: forward and backward substitution with a banded factor,
// x = L^{-1} b and x = L^{-T} b (layouts and flags: band_common.cuh).
//
// One thread per (factor, sample) pair, sequential along n. Threads are numbered factor-major
// (t = f * S + s), so the threads of a warp share a factor whenever S >= 32 and their reads of L are
// broadcasts. Each thread reads and writes its own row of length n: in the (S, F, n) layout consecutive
// threads are n elements apart. The pair counts gvae produces (batch x samples, 1e2..1e4) fill a few
// percent of the GPU's thread slots, so nothing hides a load's latency but the thread itself: a thread
// that loads row i's entries only when it reaches row i waits a memory round trip per row. Once every
// diagonal has a term (steps j >= offs[K-1], all but a prologue) and K is a compile-time KC, each thread
// therefore walks chunks of U rows: it loads the next chunk of every stream (the K diagonals and b, one
// 32-byte sector each) into registers before it walks the current one, so those loads are in flight
// while the recurrence runs; it does a chunk's divisions and scalings before the chunk's recurrence; and
// where every look-back is at least a chunk long (the grids' rows) it reads the chunk's history x_m
// (|i - m| = o_k >= 2, from its own output row) up front too. The offset-1 neighbour, present in the
// chain, grid and extended grid, stays in a register, so the serial dependency per element is one fused
// multiply-add. Segments of steps with a fixed number of active diagonals (as in substitution_cpu's
// _solve_seg) keep the inner loops free of edge tests. benchmarks/bench_cuda.py measures the resulting
// GB/s against the device's copy bandwidth.
#include "band_common.cuh"

// Step j = 0 .. n-1 solves row i = j (L x = b) or i = n-1-j (TRANSPOSED: L^T x = b):
//   x_i = m0_i b_i - sum_{k >= 1, 0 <= m < n} (L_{i,m} m0_i) x_m,   m = i - o_k (i + o_k), m0_i = 1 / L_ii,
// the products with m0 rounded as substitution_cpu's _prep does, the terms subtracted in the order
// k = 2 .. K-1, then k = 1 (the register neighbour) when o_1 = 1. Row m was solved o_k steps earlier; the
// entry linking rows i and m lies in column max(i, m) of diagonal k. Diagonal k has a term from step
// o_k on, so steps [o_p, o_{p+1}) have exactly diagonals 1..p.
// KC: K at compile time (1 <= KC <= 6), whose last segment (all K diagonals) runs in prefetched chunks;
// 0: any K, every step as in the prologue.
template <typename T, bool TRANSPOSED, int KC>
__global__ void band_solve(const T* __restrict__ L, const int* __restrict__ offs, const T* __restrict__ b,
                           T* __restrict__ x, int F, int K, int S, int n, double* __restrict__ flags) {
    constexpr int U = KC > 0 ? 32 / (int)sizeof(T) : 1;  // rows per chunk: one sector of each stream
    constexpr int KR = KC > 0 ? KC : 1;
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
        int o[KR];                                 // the offsets in registers when K is known
#pragma unroll
        for (int k = 0; k < KR; ++k) o[k] = KC > 0 ? offs[k] : 0;
        // Step j's row; the row o steps back (solved o steps earlier); the column of diagonal k linking row
        // i with the row o away (the entry lies in column max(i, m), see above).
        auto row_of = [&](int j) { return TRANSPOSED ? n - 1 - j : j; };
        auto back = [&](int i, int o_k) { return TRANSPOSED ? i + o_k : i - o_k; };
        auto entry = [&](int k, int i, int o_k) { return Lf[(long long)k * n + (TRANSPOSED ? i + o_k : i)]; };
        // One step: row i with its diagonal d, acc = m0_i b_i, scaled(k) = L_{i,m_k} m0_i for k = 1..p and
        // hist(k, m) = x_m. With KC > 0 the loop over k is unrolled, so both index registers at fixed positions.
        auto step = [&](int i, T d, T acc, int p, auto scaled, auto hist) {
#pragma unroll
            for (int k = 1; k < (KC > 0 ? KC : K); ++k) {
                if (k > p) break;
                if (k < k0) continue;
                const int m = back(i, KC > 0 ? o[k] : offs[k]);
                acc -= scaled(k) * hist(k, m);
            }
            if (has1 && p >= 1) acc -= scaled(1) * prev;
            prev = acc;
            xv[i] = acc;
            chk += acc;
            if (diag) {
                bad += d <= T(0) ? 1.0 : 0.0;
                chk_diag += (double)d;
            }
        };
        const int last = KC > 0 ? K - 1 : K;      // segments walked step by step
        int j0 = 0;
        for (int p = 0; p < last; ++p) {           // steps j0..j1-1: diagonals 1..p have a term
            const int j1 = p + 1 < K ? min(offs[p + 1], n) : n;
            for (int j = j0; j < j1; ++j) {
                const int i = row_of(j);
                const T d = Lf[i], m0 = T(1) / d;
                step(i, d, m0 * bv[i], p, [&](int k) { return entry(k, i, offs[k]) * m0; },
                     [&](int, int m) { return xv[m]; });
            }
            j0 = j1;
        }
        if (KC > 0 && j0 < n) {                    // steps j0..n-1, all K = KC diagonals, in chunks
            // far: every history term of a chunk was solved before the chunk (o_k >= U for k >= k0), so the
            // chunk reads its history up front, not one row at a time on the recurrence's path.
            bool far = true;
#pragma unroll
            for (int k = 1; k < KR; ++k) far = far && (k < k0 || o[k] >= U);
            T nl[U][KR], nb[U];                    // the next chunk's entries (nl[u][0]: the diagonal) and b
            auto load = [&](int jc) {
#pragma unroll
                for (int u = 0; u < U; ++u) {
                    if (jc + u < n) {
                        const int i = row_of(jc + u);
                        nb[u] = bv[i];
#pragma unroll
                        for (int k = 0; k < KR; ++k) nl[u][k] = entry(k, i, o[k]);
                    }
                }
            };
            load(j0);
            for (int jc = j0; jc < n; jc += U) {
                T cl[U][KR], cb[U];
#pragma unroll
                for (int u = 0; u < U; ++u) {
                    cb[u] = nb[u];
#pragma unroll
                    for (int k = 0; k < KR; ++k) cl[u][k] = nl[u][k];
                }
                if (jc + U < n) load(jc + U);     // in flight while this chunk's recurrence runs
                T ch[U][KR];                       // the chunk's history x_m, when far
                if (far) {
#pragma unroll
                    for (int u = 0; u < U; ++u) {
                        if (jc + u < n) {
#pragma unroll
                            for (int k = 1; k < KR; ++k) {
                                if (k >= k0) ch[u][k] = xv[back(row_of(jc + u), o[k])];
                            }
                        }
                    }
                }
#pragma unroll
                for (int u = 0; u < U; ++u) {      // the chunk's divisions and scalings, off the recurrence
                    if (jc + u < n) {
                        const T m0 = T(1) / cl[u][0];
                        cb[u] *= m0;
#pragma unroll
                        for (int k = 1; k < KR; ++k) cl[u][k] *= m0;
                    }
                }
#pragma unroll
                for (int u = 0; u < U; ++u) {
                    if (jc + u < n) {
                        step(row_of(jc + u), cl[u][0], cb[u], K - 1, [&](int k) { return cl[u][k]; },
                             [&](int k, int m) { return far ? ch[u][k] : xv[m]; });
                    }
                }
            }
        }
    }
    gvae::add_flags(flags, bad, chk_diag + (double)chk);
}
