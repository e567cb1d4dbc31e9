// CUDA twin of trace_cpu.py: the exact diagonal and trace of Sigma = (L L^T)^{-1} by selected inversion,
// and their gradients (layouts and flags: band_common.cuh). float64 inside, as on the CPU. One recursion
// serves both: the forward kernels write Sigma_ii (DIAG: out (F, n)) or their sum (out (F,)); the
// gradients take an adjoint per Sigma_ii, g (F, G), G = n, or G = 1 for the trace (one g for all).
//
// The chain's O(n) recursion (offs = (0, 1)) runs one thread per factor. The general selected inversion
// (window of width W = offs[K-1] + 1) runs one warp per factor, lanes across the W columns of the
// window: the forward trace keeps its W x W ring window in shared memory (global scratch when it does
// not fit); the gradient keeps the rows of Sigma in global scratch, in segments recomputed from
// checkpoints where they do not all fit, and their adjoints in a ring of W rows.
#include "band_common.cuh"

// Chain (offs = (0, 1)), one thread per factor: s_i = a_i + c_i s_{i+1}, a_i = 1 / L_ii^2,
// c_i = a_i L_{i+1,i}^2; out[f] = tr = sum_i s_i, or out[f, i] = s_i (DIAG).
template <typename T, bool DIAG>
__global__ void band_trace_chain(const T* __restrict__ L, T* __restrict__ out, int F, int n,
                                 double* __restrict__ flags) {
    double bad = 0.0, chk = 0.0;
    for (int f = blockIdx.x * blockDim.x + threadIdx.x; f < F; f += gridDim.x * blockDim.x) {
        const T* d = L + (long long)f * 2 * n;
        const T* l1 = d + n + 1;  // l1[i] = L_{i+1, i}
        const double rn = 1.0 / (double)d[n - 1];
        double s = rn * rn;
        double tr = s;
        if (DIAG) out[(long long)f * n + n - 1] = (T)s;
        for (int i = n - 2; i >= 0; --i) {
            const double r = 1.0 / (double)d[i];
            const double a = r * r;
            const double v = (double)l1[i];
            s = a + (a * v * v) * s;
            tr += s;
            if (DIAG) out[(long long)f * n + i] = (T)s;
        }
        if (!DIAG) out[f] = (T)tr;
        chk += tr;
        for (int i = 0; i < n; ++i) {
            const T v = d[i];
            bad += v <= T(0) ? 1.0 : 0.0;
            chk += (double)v;
        }
    }
    gvae::add_flags(flags, bad, chk);
}

// A chunk of 32 rows of the factor, one row a lane: e[k] = L_{r + o_k, r} (e[0] = L_rr) for k < KR, zero
// where the lane has no row or r + o_k >= n, and rl = 1 / L_rr (0 without a row). A warp loads 32
// consecutive rows so, one coalesced load per diagonal; step u of a serial sweep then takes row u's entries
// from lane u (__shfl_sync) rather than from memory on the sweep's path. invert() comes apart from load(),
// so that a chunk loaded ahead is not waited for until its turn.
template <typename T, int KR>
struct RowChunk {
    T e[KR];
    double rl;
    bool has;

    __device__ __forceinline__ void load(const T* __restrict__ Lf, const int (&o)[KR], int n, int r, bool valid) {
        has = valid;
#pragma unroll
        for (int k = 0; k < KR; ++k) e[k] = valid && r + o[k] < n ? Lf[(long long)k * n + r + o[k]] : T(0);
    }
    __device__ __forceinline__ void invert() { rl = has ? 1.0 / (double)e[0] : 0.0; }
    // Lane u's row r: c[k] = L_{r + o_k, r} for 1 <= k < KR; returns 1 / L_rr. Every lane calls it.
    __device__ __forceinline__ double take(int u, double (&c)[KR]) const {
#pragma unroll
        for (int k = 1; k < KR; ++k) c[k] = (double)__shfl_sync(gvae::FULL_MASK, e[k], u);
        return __shfl_sync(gvae::FULL_MASK, rl, u);
    }
    // Lane u's L_rr. Every lane calls it.
    __device__ __forceinline__ double diag(int u) const { return (double)__shfl_sync(gvae::FULL_MASK, e[0], u); }
};

// General offsets, one warp per factor. The window win (W x W, float64) is a ring: slot (i mod W) holds
// index i, and slots of indices >= n hold zeros. Per step i = n-1 .. 0 (m_k = i + o_k, rl = 1 / L_ii):
//   t[col] = sum_{k >= 1, m_k < n} L_{m_k, i} win[slot(m_k)][col]        (lanes across col)
//   Sigma_ii = rl (rl + sum_k L_{m_k, i} rl t[slot(m_k)]),  row and column slot(i) <- -rl t.
// SHARED: win and t live in dynamic shared memory, (W*W + W) doubles per warp; otherwise in `scratch`,
// (W*W + W) doubles per warp of the grid. out[f] = sum_i Sigma_ii, or out[f, i] = Sigma_ii (DIAG).
// The steps run in chunks of 32, lane u holding step i0 - u's Sigma_ii until the chunk ends (one
// coalesced store of 32 values). Each step's entries L_{m_k, i} and 1 / L_ii would otherwise be loaded
// when the step is reached, a memory round trip on the warp's serial path per step: with K = KC known
// at compile time (1 <= KC <= 6) lane u loads step i0 - u's K entries a chunk ahead (coalesced across
// the lanes, RowChunk) and each step takes them by shuffle; KC = 0 reads them at the step, for any K. The
// arithmetic is the same, term for term, either way.
template <typename T, bool SHARED, bool DIAG, int KC>
__global__ void band_trace_window(const T* __restrict__ L, const int* __restrict__ offs, T* __restrict__ out,
                                  int F, int K, int n, double* __restrict__ scratch, double* __restrict__ flags) {
    extern __shared__ double smem[];
    constexpr int KR = KC > 0 ? KC : 1;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int W = offs[K - 1] + 1;
    int o[KR];  // the offsets in registers when K is known
#pragma unroll
    for (int k = 0; k < KR; ++k) o[k] = KC > 0 ? offs[k] : 0;
    double bad = 0.0, chk = 0.0;
    const int slot = blockIdx.x * warps + warp;  // this warp's scratch, reused for each of its factors
    double* win = SHARED ? smem + (long long)warp * (W * W + W) : scratch + (long long)slot * (W * W + W);
    double* t = win + W * W;
    for (int f = slot; f < F; f += gridDim.x * warps) {
        const T* Lf = L + (long long)f * K * n;
        for (int idx = lane; idx < W * W; idx += 32) win[idx] = 0.0;
        for (int i = lane; i < n; i += 32) {
            const T v = Lf[i];
            bad += v <= T(0) ? 1.0 : 0.0;
            chk += (double)v;
        }
        __syncwarp();
        RowChunk<T, KR> next, cur;  // lane u: step i0 - u's row, for the chunk of steps i0 .. i0 - 31
        auto load = [&](int i0) { next.load(Lf, o, n, i0 - lane, i0 - lane >= 0); };
        if (KC > 0) load(n - 1);
        double tr = 0.0;
        int s0 = (n - 1) % W;  // ring slot of index i
        for (int i0 = n - 1; i0 >= 0; i0 -= 32) {
            if (KC > 0) {
                cur = next;
                if (i0 >= 32) load(i0 - 32);  // in flight while this chunk's steps run
                cur.invert();
            }
            const int steps = min(32, i0 + 1);
            double mine = 0.0;  // Sigma_ii of step i0 - lane
            for (int u = 0; u < steps; ++u) {
                const int i = i0 - u;
                double c[KR];  // c[k] = L_{m_k, i}
                const double rl = KC > 0 ? cur.take(u, c) : 1.0 / (double)Lf[i];
                // diagonal k has a term while m_k < n (the offsets increase: no later one has)
                auto off = [&](int k) { return KC > 0 ? o[k] : offs[k]; };
                auto entry = [&](int k) { return KC > 0 ? c[k] : (double)Lf[(long long)k * n + i + off(k)]; };
                auto ring = [&](int k) { return s0 + off(k) >= W ? s0 + off(k) - W : s0 + off(k); };  // slot(m_k)
                for (int col = lane; col < W; col += 32) {
                    double tc = 0.0;
#pragma unroll
                    for (int k = 1; k < (KC > 0 ? KC : K); ++k) {
                        if (i + off(k) >= n) break;
                        tc += entry(k) * win[ring(k) * W + col];
                    }
                    t[col] = tc;
                }
                __syncwarp();
                double d = rl;
#pragma unroll
                for (int k = 1; k < (KC > 0 ? KC : K); ++k) {
                    if (i + off(k) >= n) break;
                    d += entry(k) * rl * t[ring(k)];
                }
                d *= rl;
                for (int col = lane; col < W; col += 32) {
                    const double v = col == s0 ? d : -rl * t[col];
                    win[s0 * W + col] = v;
                    win[col * W + s0] = v;
                }
                __syncwarp();
                if (lane == u) mine = d;
                tr += d;
                s0 = s0 == 0 ? W - 1 : s0 - 1;
            }
            if (DIAG && lane < steps) out[(long long)f * n + i0 - lane] = (T)mine;
        }
        if (lane == 0) {
            if (!DIAG) out[f] = (T)tr;
            chk += tr;
        }
        __syncwarp();
    }
    gvae::add_flags(flags, bad, chk);
}

// Gradient for the chain, one thread per factor (reverse mode through s_i = a_i + c_i s_{i+1}):
//   out[0, i] = -2 sb_i s_i / L_ii,  out[1, i+1] = 2 sb_i a_i L_{i+1,i} s_{i+1},  sb_{i+1} = g_{i+1} + sb_i c_i,
// sb_0 = g_0 (g (F, G): g_i = g[f, i] for G = n, g[f, 0] for G = 1). s is kept in `scratch` (n, F),
// interleaved so that the threads' stores coalesce.
template <typename T>
__global__ void band_trace_chain_grad(const T* __restrict__ L, const T* __restrict__ g, T* __restrict__ out,
                                      int F, int n, int G, double* __restrict__ scratch,
                                      double* __restrict__ flags) {
    const int gi = G > 1 ? 1 : 0;  // g's stride over i
    double bad = 0.0, chk = 0.0;
    for (int f = blockIdx.x * blockDim.x + threadIdx.x; f < F; f += gridDim.x * blockDim.x) {
        const T* d = L + (long long)f * 2 * n;
        const T* l1 = d + n + 1;
        T* g0 = out + (long long)f * 2 * n;
        T* g1 = g0 + n + 1;  // g1[i] = out[1, i+1]
        double* s = scratch + f;
        const double rn = 1.0 / (double)d[n - 1];
        double acc = rn * rn;
        s[(long long)(n - 1) * F] = acc;
        for (int i = n - 2; i >= 0; --i) {
            const double r = 1.0 / (double)d[i];
            const double a = r * r;
            const double v = (double)l1[i];
            acc = a + (a * v * v) * acc;
            s[(long long)i * F] = acc;
        }
        const T* gr = g + (long long)f * G;
        double sb = (double)gr[0];
        T sum = T(0);
        g0[n] = T(0);  // out[1, 0]: no such slot
        for (int i = 0; i < n - 1; ++i) {
            const double di = (double)d[i];
            const double r = 1.0 / di;
            const double a = r * r;
            const double v = (double)l1[i];
            const double si = s[(long long)i * F], si1 = s[(long long)(i + 1) * F];
            const T v0 = (T)(-2.0 * sb * si / di);
            const T v1 = (T)(2.0 * sb * a * v * si1);
            g0[i] = v0;
            g1[i] = v1;
            sum += v0 + v1;
            sb = (double)gr[(i + 1) * gi] + sb * (a * v * v);
        }
        const T last = (T)(-2.0 * sb * s[(long long)(n - 1) * F] / (double)d[n - 1]);
        g0[n - 1] = last;
        sum += last;
        chk += (double)sum;
        for (int i = 0; i < n; ++i) {
            const T v = d[i];
            bad += v <= T(0) ? 1.0 : 0.0;
            chk += (double)v;
        }
    }
    gvae::add_flags(flags, bad, chk);
}

// Rows hi-1 .. lo of Sigma for band_trace_band_grad, by the warp: R[r - b][d] = Sigma_{r, r+d} (r + d < n),
// each row from the w = W - 1 rows after it, already in R; Sigma_{m, j} with j < m is read as R[j - b][m - j].
// Lanes run across d. A segment recomputed from its checkpoint repeats these operations in this order.
// KC > 0: K = KC, each chunk of 32 rows' entries loaded at once (RowChunk) and taken by shuffle.
template <typename T, int KC>
__device__ void band_grad_rows(const T* __restrict__ Lf, const int* __restrict__ offs, const int (&o)[KC > 0 ? KC : 1],
                               int K, int n, int W, double* R, int b, int lo, int hi, int lane) {
    constexpr int KR = KC > 0 ? KC : 1;
    auto off = [&](int k) { return KC > 0 ? o[k] : offs[k]; };
    for (int i0 = hi - 1; i0 >= lo; i0 -= 32) {
        RowChunk<T, KR> ch;  // lane u: row i0 - u
        if (KC > 0) {
            ch.load(Lf, o, n, i0 - lane, i0 - lane >= lo);
            ch.invert();
        }
        const int steps = min(32, i0 - lo + 1);
        for (int u = 0; u < steps; ++u) {
            const int i = i0 - u;
            double c[KR];  // c[k] = L_{i + o_k, i}
            const double rl = KC > 0 ? ch.take(u, c) : 1.0 / (double)Lf[i];
            auto entry = [&](int k) { return KC > 0 ? c[k] : (double)Lf[(long long)k * n + i + off(k)]; };
            const int jend = min(i + W, n);
            double* Ri = R + (long long)(i - b) * W;
            for (int d = 1 + lane; d < jend - i; d += 32) {
                const int j = i + d;
                double y = 0.0;
#pragma unroll
                for (int k = 1; k < (KC > 0 ? KC : K); ++k) {
                    const int m = i + off(k);
                    if (m >= n) break;  // the offsets increase: no later diagonal has a term
                    y += entry(k) * (j < m ? R[(long long)(j - b) * W + (m - j)] : R[(long long)(m - b) * W + (j - m)]);
                }
                Ri[d] = -rl * y;
            }
            __syncwarp();
            if (lane == 0) {
                double sd = rl;
#pragma unroll
                for (int k = 1; k < (KC > 0 ? KC : K); ++k) {
                    if (i + off(k) >= n) break;
                    sd -= entry(k) * Ri[off(k)];
                }
                Ri[0] = rl * sd;
            }
            __syncwarp();
        }
    }
}

// Gradient for general offsets, one warp per factor: reverse mode through the selected inversion, as
// trace_cpu.py's _grad_blocks. Step i of the reverse sweep (i = 0 .. n-1) reads rows i .. i + w of Sigma
// and updates their adjoints, row i's final by then: the adjoints live in a ring Rb of W rows (row r in
// slot r mod W, reset for row i + W after step i). The rows of Sigma are taken in segments of ks rows,
// m = ceil(n / ks) of them: the forward sweep (segments m-1 .. 0) keeps the first w rows of each segment
// but the first in CP, the reverse sweep recomputes each segment but the first (still in R) from the
// checkpoint of the segment after it, in the same operations, so the result does not depend on ks.
// R holds one segment and the w rows after it, row r at r - b (b: the segment's first row).
// scratch per warp of the grid (trace_cuda.py's _grad_scratch): R min(ks + w, n) x W, CP (m - 1) w x W,
// Rb W x W float64; (n + W) W for ks = n. SHARED: Rb in dynamic shared memory instead (W x W float64 a
// warp; its part of the scratch goes unused). KC as in band_grad_rows, the reverse sweep's chunks of 32
// rows ascending. out[f] (K, n): d(sum_i g_i Sigma_ii) / d L on the band (g (F, G) as in
// band_trace_chain_grad), 0 in the slots that do not exist.
template <typename T, bool SHARED, int KC>
__global__ void band_trace_band_grad(const T* __restrict__ L, const int* __restrict__ offs, const T* __restrict__ g,
                                     T* __restrict__ out, int F, int K, int n, int G, int ks,
                                     double* __restrict__ scratch, double* __restrict__ flags) {
    extern __shared__ double smem[];
    constexpr int KR = KC > 0 ? KC : 1;
    const int gi = G > 1 ? 1 : 0;  // g's stride over i
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const int W = offs[K - 1] + 1, w = W - 1;
    const int nseg = (n + ks - 1) / ks, rows = min(ks + w, n);
    const int slot = blockIdx.x * warps + (threadIdx.x >> 5);  // this warp's scratch, reused per factor
    double* R = scratch + (long long)slot * ((long long)(rows + (nseg - 1) * w + W) * W);
    double* CP = R + (long long)rows * W;
    double* Rb = SHARED ? smem + (long long)(threadIdx.x >> 5) * W * W : CP + (long long)(nseg - 1) * w * W;
    int o[KR];  // the offsets in registers when K is known
#pragma unroll
    for (int k = 0; k < KR; ++k) o[k] = KC > 0 ? offs[k] : 0;
    auto off = [&](int k) { return KC > 0 ? o[k] : offs[k]; };
    double bad = 0.0, chk = 0.0;
    for (int f = slot; f < F; f += gridDim.x * warps) {
        const T* Lf = L + (long long)f * K * n;
        T* gf = out + (long long)f * K * n;
        for (int i = lane; i < n; i += 32) {
            const T v = Lf[i];
            bad += v <= T(0) ? 1.0 : 0.0;
            chk += (double)v;
        }
        // forward sweep, segments m-1 .. 0
        for (int s = nseg - 1; s >= 0; --s) {
            const int b = s * ks, e = min(b + ks, n), c = min(w, n - e);
            // the first c rows of segment s + 1 move from slots 0 .. to ks .., the last first (the two
            // overlap for ks < w); each lane copies its own columns, so none overwrites what another reads
            for (int r = c - 1; r >= 0; --r)
                for (int d = lane; d < W; d += 32) R[(long long)(ks + r) * W + d] = R[(long long)r * W + d];
            __syncwarp();
            band_grad_rows<T, KC>(Lf, offs, o, K, n, W, R, b, b, e, lane);
            if (s > 0)
                for (int idx = lane; idx < min(w, n - b) * W; idx += 32)
                    CP[(long long)(s - 1) * w * W + idx] = R[idx];
            __syncwarp();
        }
        // reverse sweep, i = 0 .. n-1; the ring starts with rows 0 .. w, g_r on their diagonals
        const T* gr = g + (long long)f * G;
        for (int idx = lane; idx < W * W; idx += 32) {
            const int r = idx / W;
            Rb[idx] = idx == r * W && r < n ? (double)gr[r * gi] : 0.0;
        }
        __syncwarp();
        int s0 = 0;  // ring slot of row i
        for (int s = 0; s < nseg; ++s) {
            const int b = s * ks, e = min(b + ks, n);
            if (s > 0) {  // segment 0 is still in R from the forward sweep
                const int c = min(w, n - e);  // the rows after it: the start of segment s + 1
                for (int idx = lane; idx < c * W; idx += 32)
                    R[(long long)ks * W + idx] = CP[(long long)s * w * W + idx];
                __syncwarp();
                band_grad_rows<T, KC>(Lf, offs, o, K, n, W, R, b, b, e, lane);
            }
            for (int i0 = b; i0 < e; i0 += 32) {
                RowChunk<T, KR> ch;  // lane u: row i0 + u
                if (KC > 0) {
                    ch.load(Lf, o, n, i0 + lane, i0 + lane < e);
                    ch.invert();
                }
                const int steps = min(32, e - i0);
                for (int u = 0; u < steps; ++u) {
                    const int i = i0 + u;
                    double c[KR];  // c[k] = L_{i + o_k, i}
                    const double Lii = KC > 0 ? ch.diag(u) : (double)Lf[i];
                    const double rl = KC > 0 ? ch.take(u, c) : 1.0 / Lii;
                    auto entry = [&](int k) { return KC > 0 ? c[k] : (double)Lf[(long long)k * n + i + off(k)]; };
                    const int kend = KC > 0 ? KC : K;  // the loops over k (a constant when KC > 0)
                    const int jend = min(i + W, n);
                    const double* Ri = R + (long long)(i - b) * W;
                    double* Rbi = Rb + (long long)s0 * W;
                    const double yb0 = Rbi[0];
                    // Sigma_ii = rl^2 - rl sum_k c_k Sigma_{i, m_k}  (diagonal k has a term while m_k < n)
                    double ssum = 0.0;
#pragma unroll
                    for (int k = 1; k < kend; ++k) {
                        if (i + off(k) >= n) break;
                        ssum += entry(k) * Ri[off(k)];
                    }
                    double rlb = yb0 * (2.0 * rl - ssum);
                    __syncwarp();  // every lane has read Rbi[0] and Ri before Rbi changes
#pragma unroll
                    for (int k = 1; k < kend; ++k) {  // distinct offsets: no two lanes share a slot
                        if (i + off(k) >= n) break;
                        if (lane == ((k - 1) & 31)) Rbi[off(k)] -= yb0 * rl * entry(k);
                    }
                    __syncwarp();
                    // Sigma_{i, i+d} = -rl T_d  =>  d/drl = Sigma_{i, i+d} L_ii
                    double acc0 = 0.0;
                    for (int d = 1 + lane; d < jend - i; d += 32) acc0 += Rbi[d] * Ri[d];
                    rlb += Lii * gvae::warp_sum(acc0);
#pragma unroll
                    for (int k = 1; k < kend; ++k) {  // in order: two diagonals may update one Rb entry
                        const int ok = off(k);
                        const int m = i + ok;
                        if (m >= n) break;
                        const int sm = s0 + ok >= W ? s0 + ok - W : s0 + ok;  // ring slot of row m
                        const double coef = -rl * entry(k);
                        double acc = 0.0;
                        for (int d = 1 + lane; d < jend - i; d += 32) {
                            const int j = i + d;
                            const double yb = Rbi[d];
                            const int sj = s0 + d >= W ? s0 + d - W : s0 + d;  // ring slot of row j
                            const bool inj = j < m;  // Sigma_{j, m} in row j, else Sigma_{m, j} in row m
                            acc += yb * R[inj ? (long long)(j - b) * W + (m - j) : (long long)(m - b) * W + (j - m)];
                            Rb[inj ? (long long)sj * W + (m - j) : (long long)sm * W + (j - m)] += coef * yb;
                        }
                        acc = gvae::warp_sum(acc);
                        if (lane == 0) gf[(long long)k * n + m] = (T)(-yb0 * rl * Ri[ok] - rl * acc);
                        __syncwarp();
                    }
                    if (lane == 0) gf[i] = (T)(-rlb * rl * rl);
                    // row i's adjoints are spent: its slot takes row i + W (none reaches it before step i + 1)
                    for (int d = lane; d < W; d += 32) Rbi[d] = d == 0 && i + W < n ? (double)gr[(i + W) * gi] : 0.0;
                    __syncwarp();
                    s0 = s0 == W - 1 ? 0 : s0 + 1;
                }
            }
        }
        for (int k = 1; k < K; ++k)
            for (int i = lane; i < offs[k]; i += 32) gf[(long long)k * n + i] = T(0);
        __syncwarp();
        T sum = T(0);
        for (int idx = lane; idx < K * n; idx += 32) sum += gf[idx];
        chk += (double)sum;
        __syncwarp();
    }
    gvae::add_flags(flags, bad, chk);
}
