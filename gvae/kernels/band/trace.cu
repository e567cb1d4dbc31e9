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

// General offsets, one warp per factor. The window win (W x W, float64) is a ring: slot (i mod W) holds
// index i, and slots of indices >= n hold zeros. Per step i = n-1 .. 0 (m_k = i + o_k, rl = 1 / L_ii):
//   t[col] = sum_{k >= 1, m_k < n} L_{m_k, i} win[slot(m_k)][col]        (lanes across col)
//   Sigma_ii = rl (rl + sum_k L_{m_k, i} rl t[slot(m_k)]),  row and column slot(i) <- -rl t.
// SHARED: win and t live in dynamic shared memory, (W*W + W) doubles per warp; otherwise in `scratch`,
// (W*W + W) doubles per warp of the grid. out[f] = sum_i Sigma_ii, or out[f, i] = Sigma_ii (DIAG).
template <typename T, bool SHARED, bool DIAG>
__global__ void band_trace_window(const T* __restrict__ L, const int* __restrict__ offs, T* __restrict__ out,
                                  int F, int K, int n, double* __restrict__ scratch, double* __restrict__ flags) {
    extern __shared__ double smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int W = offs[K - 1] + 1;
    double bad = 0.0, chk = 0.0;
    const int slot = blockIdx.x * warps + warp;  // this warp's scratch, reused for each of its factors
    double* win = SHARED ? smem + (long long)warp * (W * W + W) : scratch + (long long)slot * (W * W + W);
    for (int f = slot; f < F; f += gridDim.x * warps) {
        double* t = win + W * W;
        const T* Lf = L + (long long)f * K * n;
        for (int idx = lane; idx < W * W; idx += 32) win[idx] = 0.0;
        for (int i = lane; i < n; i += 32) {
            const T v = Lf[i];
            bad += v <= T(0) ? 1.0 : 0.0;
            chk += (double)v;
        }
        __syncwarp();
        double tr = 0.0;
        int kmax = 0;
        int s0 = (n - 1) % W;  // ring slot of index i
        for (int i = n - 1; i >= 0; --i) {
            while (kmax + 1 < K && i + offs[kmax + 1] < n) ++kmax;
            const double rl = 1.0 / (double)Lf[i];
            for (int col = lane; col < W; col += 32) {
                double tc = 0.0;
                for (int k = 1; k <= kmax; ++k) {
                    const int o = offs[k];
                    const int row = s0 + o >= W ? s0 + o - W : s0 + o;
                    tc += (double)Lf[(long long)k * n + i + o] * win[row * W + col];
                }
                t[col] = tc;
            }
            __syncwarp();
            double d = rl;
            for (int k = 1; k <= kmax; ++k) {
                const int o = offs[k];
                const int row = s0 + o >= W ? s0 + o - W : s0 + o;
                d += (double)Lf[(long long)k * n + i + o] * rl * t[row];
            }
            d *= rl;
            for (int col = lane; col < W; col += 32) {
                const double v = -rl * t[col];
                win[s0 * W + col] = v;
                win[col * W + s0] = v;
            }
            __syncwarp();
            if (lane == 0) {
                win[s0 * W + s0] = d;
                if (DIAG) out[(long long)f * n + i] = (T)d;
            }
            __syncwarp();
            tr += d;
            s0 = s0 == 0 ? W - 1 : s0 - 1;
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
template <typename T>
__device__ void band_grad_rows(const T* __restrict__ Lf, const int* __restrict__ offs, int K, int n, int W,
                               double* R, int b, int lo, int hi, int lane) {
    int kmax = 0;
    for (int i = hi - 1; i >= lo; --i) {
        while (kmax + 1 < K && i + offs[kmax + 1] < n) ++kmax;
        const double rl = 1.0 / (double)Lf[i];
        const int jend = min(i + W, n);
        double* Ri = R + (long long)(i - b) * W;
        for (int d = 1 + lane; d < jend - i; d += 32) {
            const int j = i + d;
            double y = 0.0;
            for (int k = 1; k <= kmax; ++k) {
                const int m = i + offs[k];
                const double c = (double)Lf[(long long)k * n + m];
                y += c * (j < m ? R[(long long)(j - b) * W + (m - j)] : R[(long long)(m - b) * W + (j - m)]);
            }
            Ri[d] = -rl * y;
        }
        __syncwarp();
        if (lane == 0) {
            double sd = rl;
            for (int k = 1; k <= kmax; ++k) {
                const int o = offs[k];
                sd -= (double)Lf[(long long)k * n + i + o] * Ri[o];
            }
            Ri[0] = rl * sd;
        }
        __syncwarp();
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
// Rb W x W float64; (n + W) W for ks = n. out[f] (K, n): d(sum_i g_i Sigma_ii) / d L on the band
// (g (F, G) as in band_trace_chain_grad), 0 in the slots that do not exist.
template <typename T>
__global__ void band_trace_band_grad(const T* __restrict__ L, const int* __restrict__ offs, const T* __restrict__ g,
                                     T* __restrict__ out, int F, int K, int n, int G, int ks,
                                     double* __restrict__ scratch, double* __restrict__ flags) {
    const int gi = G > 1 ? 1 : 0;  // g's stride over i
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const int W = offs[K - 1] + 1, w = W - 1;
    const int nseg = (n + ks - 1) / ks, rows = min(ks + w, n);
    const int slot = blockIdx.x * warps + (threadIdx.x >> 5);  // this warp's scratch, reused per factor
    double* R = scratch + (long long)slot * ((long long)(rows + (nseg - 1) * w + W) * W);
    double* CP = R + (long long)rows * W;
    double* Rb = CP + (long long)(nseg - 1) * w * W;
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
            band_grad_rows(Lf, offs, K, n, W, R, b, b, e, lane);
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
        int kmax = K - 1;
        int s0 = 0;  // ring slot of row i
        for (int s = 0; s < nseg; ++s) {
            const int b = s * ks, e = min(b + ks, n);
            if (s > 0) {  // segment 0 is still in R from the forward sweep
                const int c = min(w, n - e);  // the rows after it: the start of segment s + 1
                for (int idx = lane; idx < c * W; idx += 32)
                    R[(long long)ks * W + idx] = CP[(long long)s * w * W + idx];
                __syncwarp();
                band_grad_rows(Lf, offs, K, n, W, R, b, b, e, lane);
            }
            for (int i = b; i < e; ++i) {
                while (kmax > 0 && i + offs[kmax] >= n) --kmax;
                const double Lii = (double)Lf[i];
                const double rl = 1.0 / Lii;
                const int jend = min(i + W, n);
                const double* Ri = R + (long long)(i - b) * W;
                double* Rbi = Rb + (long long)s0 * W;
                const double yb0 = Rbi[0];
                // Sigma_ii = rl^2 - rl sum_k c_k Sigma_{i, m_k}
                double ssum = 0.0;
                for (int k = 1; k <= kmax; ++k) ssum += (double)Lf[(long long)k * n + i + offs[k]] * Ri[offs[k]];
                double rlb = yb0 * (2.0 * rl - ssum);
                __syncwarp();  // every lane has read Rbi[0] and Ri before Rbi changes
                for (int k = 1 + lane; k <= kmax; k += 32) {  // distinct offsets: no two lanes share a slot
                    const int o = offs[k];
                    Rbi[o] -= yb0 * rl * (double)Lf[(long long)k * n + i + o];
                }
                __syncwarp();
                // Sigma_{i, i+d} = -rl T_d  =>  d/drl = Sigma_{i, i+d} L_ii
                double acc0 = 0.0;
                for (int d = 1 + lane; d < jend - i; d += 32) acc0 += Rbi[d] * Ri[d];
                rlb += Lii * gvae::warp_sum(acc0);
                for (int k = 1; k <= kmax; ++k) {  // in order: two diagonals may update one Rb entry
                    const int o = offs[k];
                    const int m = i + o;
                    const int sm = s0 + o >= W ? s0 + o - W : s0 + o;  // ring slot of row m
                    const double c = (double)Lf[(long long)k * n + m];
                    const double coef = -rl * c;
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
                    if (lane == 0) gf[(long long)k * n + m] = (T)(-yb0 * rl * Ri[o] - rl * acc);
                    __syncwarp();
                }
                if (lane == 0) gf[i] = (T)(-rlb * rl * rl);
                // row i's adjoints are spent: its slot takes row i + W (none reaches it before step i + 1)
                for (int d = lane; d < W; d += 32) Rbi[d] = d == 0 && i + W < n ? (double)gr[(i + W) * gi] : 0.0;
                __syncwarp();
                s0 = s0 == W - 1 ? 0 : s0 + 1;
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
