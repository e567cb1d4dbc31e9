// CUDA twins of the band/*_cpu.py kernels: banded lower-triangular factors (layouts in band/__init__.py).
//
// Canonical layouts (the wrappers in band.py bring every call to them):
//   L (F, K, n) C-contiguous, L[f, k, i] = L_{i, i - offs[k]}; slots with i < offs[k] are never read
//   (they may hold NaN). offs: int32 (K,), strictly increasing, offs[0] = 0, offs[K-1] < n.
//   right-hand sides and results (S, F, n) C-contiguous: b[s, f] is solved with factor f.
//
// Parallel decomposition
// - Substitutions (band_solve, band_solve_t): one thread per (factor, sample) pair, sequential along n.
//   Threads are numbered factor-major (t = f * S + s), so the threads of a warp share a factor whenever
//   S >= 32 and their reads of L are broadcasts. Each thread reads and writes its own row of length n:
//   in the (S, F, n) layout consecutive threads are n elements apart, so one warp-wide load touches 32
//   sectors; every later element of those sectors (8 floats, 4 doubles) is then an L1 hit. We keep this
//   direct layout rather than staging tiles through shared memory in an interleaved order: the pair
//   counts gvae produces (batch x samples, 1e2..1e4) use a few percent of the GPU's thread slots, so
//   the per-thread working set (one 32-byte sector per stream: b, x and the K diagonals) fits L1
//   comfortably and each sector still comes from DRAM once; staging would add shared-memory round trips
//   and barriers around a recurrence whose look-back (offs[K-1]) is arbitrary. The history
//   x_{i - o_k} (o_k >= 2) is read back from the thread's own output row (L1); the offset-1 neighbour,
//   present in the chain, grid and extended grid, stays in a register, so the serial dependency per
//   element is one fused multiply-add. Segments of i with a fixed number of active diagonals (as in
//   band_cpu's _solve_seg) keep the inner loops free of edge tests. examples/bench_cuda.py measures
//   the resulting GB/s against the device's copy bandwidth.
// - Products (band_matvec, band_matvec_t) and band_outer have no recurrence: one thread per output
//   element, consecutive threads on consecutive i (coalesced).
// - band_logdet: one warp per factor, lanes along the diagonal.
// - Exact trace of Sigma = (L L^T)^{-1} and its gradient: float64 inside, as on the CPU. The chain's
//   O(n) recursion runs one thread per factor. The general selected inversion (window of width
//   W = offs[K-1] + 1) runs one warp per factor, lanes across the W columns of the window: the forward
//   trace keeps its W x W ring window in shared memory (global scratch when it does not fit); the
//   gradient stores the band of Sigma and its adjoint, (n, W) each, in global scratch.
//
// Every kernel adds (number of diagonal entries <= 0, checksum) into flags[0], flags[1] (float64, zeroed
// by the caller) with one atomicAdd per warp: the checksum adds up the outputs and the diagonals read,
// so any NaN or inf in the inputs reaches it; the wrappers turn the flags into errors.
#include "cuda_common.cuh"

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

// --------------------------------------------------------------------------------------------------
// Substitutions: one thread per (factor, sample) pair
// --------------------------------------------------------------------------------------------------

// x[s, f] = L_f^{-1} b[s, f]:  x_i = m0_i b_i - sum_{k >= 1, i >= o_k} (L[k, i] m0_i) x_{i - o_k},
// m0_i = 1 / L_ii, for i = 0 .. n-1 (the products with m0 rounded as band_cpu's _prep does).
template <typename T>
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
        T prev = T(0);
        int lo = 0;
        for (int p = 0; p < K; ++p) {              // rows lo..hi-1: diagonals 1..p have a term
            const int hi = p + 1 < K ? min(offs[p + 1], n) : n;
            for (int i = lo; i < hi; ++i) {
                const T d = Lf[i];
                const T m0 = T(1) / d;
                T acc = m0 * bv[i];
                for (int k = k0; k <= p; ++k) acc -= (Lf[(long long)k * n + i] * m0) * xv[i - offs[k]];
                if (has1 && p >= 1) acc -= (Lf[n + i] * m0) * prev;
                prev = acc;
                xv[i] = acc;
                chk += acc;
                if (diag) {
                    bad += d <= T(0) ? 1.0 : 0.0;
                    chk_diag += (double)d;
                }
            }
            lo = hi;
        }
    }
    gvae::add_flags(flags, bad, chk_diag + (double)chk);
}

// x[s, f] = L_f^{-T} b[s, f]:  x_i = m0_i b_i - sum_{k >= 1, i + o_k < n} (L[k, i + o_k] m0_i) x_{i + o_k},
// for i = n-1 .. 0.
template <typename T>
__global__ void band_solve_t(const T* __restrict__ L, const int* __restrict__ offs, const T* __restrict__ b,
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
        const bool has1 = K > 1 && offs[1] == 1;
        const int k0 = has1 ? 2 : 1;
        const bool diag = s == 0;
        T prev = T(0);
        int hi = n;
        for (int p = 0; p < K; ++p) {              // rows hi-1..lo: diagonals 1..p have a term
            const int lo = p + 1 < K ? max(n - offs[p + 1], 0) : 0;
            for (int i = hi - 1; i >= lo; --i) {
                const T d = Lf[i];
                const T m0 = T(1) / d;
                T acc = m0 * bv[i];
                for (int k = k0; k <= p; ++k) {
                    const int o = offs[k];
                    acc -= (Lf[(long long)k * n + i + o] * m0) * xv[i + o];
                }
                if (has1 && p >= 1) acc -= (Lf[n + i + 1] * m0) * prev;
                prev = acc;
                xv[i] = acc;
                chk += acc;
                if (diag) {
                    bad += d <= T(0) ? 1.0 : 0.0;
                    chk_diag += (double)d;
                }
            }
            hi = lo;
        }
    }
    gvae::add_flags(flags, bad, chk_diag + (double)chk);
}

// --------------------------------------------------------------------------------------------------
// Products: one thread per output element (coalesced)
// --------------------------------------------------------------------------------------------------

// y[s, f] = L_f x[s, f]:  y_i = L_ii x_i + sum_{k >= 1, i >= o_k} L[k, i] x_{i - o_k}.
// Element e = r * n + i of the (S, F, n) output, r = s * F + f.
template <typename T>
__global__ void band_matvec(const T* __restrict__ L, const int* __restrict__ offs, const T* __restrict__ x,
                            T* __restrict__ y, int F, int K, int S, int n, double* __restrict__ flags) {
    const int total = F * S * n;  // < 2^31, checked by the caller
    double bad = 0.0, chk = 0.0;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += gridDim.x * blockDim.x) {
        const int r = e / n, i = e - r * n;
        const int f = r % F;
        const T* Lf = L + (long long)f * K * n;
        const T* xv = x + (long long)r * n;
        const T d = Lf[i];
        T acc = d * xv[i];
        for (int k = 1; k < K; ++k) {
            const int o = offs[k];
            if (i >= o) acc += Lf[(long long)k * n + i] * xv[i - o];
        }
        y[e] = acc;
        chk += (double)acc;
        if (r < F) {  // s == 0
            bad += d <= T(0) ? 1.0 : 0.0;
            chk += (double)d;
        }
    }
    gvae::add_flags(flags, bad, chk);
}

// y[s, f] = L_f^T x[s, f]:  y_i = L_ii x_i + sum_{k >= 1, i + o_k < n} L[k, i + o_k] x_{i + o_k}.
template <typename T>
__global__ void band_matvec_t(const T* __restrict__ L, const int* __restrict__ offs, const T* __restrict__ x,
                              T* __restrict__ y, int F, int K, int S, int n, double* __restrict__ flags) {
    const int total = F * S * n;
    double bad = 0.0, chk = 0.0;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += gridDim.x * blockDim.x) {
        const int r = e / n, i = e - r * n;
        const int f = r % F;
        const T* Lf = L + (long long)f * K * n;
        const T* xv = x + (long long)r * n;
        const T d = Lf[i];
        T acc = d * xv[i];
        for (int k = 1; k < K; ++k) {
            const int o = offs[k];
            if (i + o < n) acc += Lf[(long long)k * n + i + o] * xv[i + o];
        }
        y[e] = acc;
        chk += (double)acc;
        if (r < F) {
            bad += d <= T(0) ? 1.0 : 0.0;
            chk += (double)d;
        }
    }
    gvae::add_flags(flags, bad, chk);
}

// out[q, f, k, i] = scale * sum_{s in chunk q} a[s, f, i] c[s, f, i - o_k]  (0 for i < o_k), chunk q =
// [q S / Q, (q+1) S / Q). One thread per (q, f, i), the diagonals eight at a time in registers, the
// samples summed in order (as band_cpu's band_outer). a, c (S, F, n); out (Q, F, K, n).
template <typename T>
__global__ void band_outer(const T* __restrict__ a, const T* __restrict__ c, const int* __restrict__ offs,
                           T scale, T* __restrict__ out, int Q, int F, int K, int S, int n) {
    const int total = Q * F * n;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += gridDim.x * blockDim.x) {
        const int qf = e / n, i = e - qf * n;
        const int q = qf / F, f = qf - q * F;
        const int s_lo = (int)((long long)q * S / Q), s_hi = (int)((long long)(q + 1) * S / Q);
        T* o_base = out + (long long)qf * K * n + i;
        for (int k0 = 0; k0 < K; k0 += 8) {
            int o[8];
            T acc[8];
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                o[u] = k0 + u < K ? offs[k0 + u] : n;  // n: never active
                acc[u] = T(0);
            }
            for (int s = s_lo; s < s_hi; ++s) {
                const long long row = ((long long)s * F + f) * n;
                const T av = a[row + i];
                const T* cv = c + row;
#pragma unroll
                for (int u = 0; u < 8; ++u)
                    if (i >= o[u]) acc[u] += av * cv[i - o[u]];
            }
#pragma unroll
            for (int u = 0; u < 8; ++u)
                if (k0 + u < K) o_base[(long long)(k0 + u) * n] = i >= o[u] ? acc[u] * scale : T(0);
        }
    }
}

// --------------------------------------------------------------------------------------------------
// Log-determinant: one warp per factor
// --------------------------------------------------------------------------------------------------

// out[f] = sum_i log L[f, 0, i]: logs in T's precision, summed in float64. Flags: the diagonal's
// entries <= 0 and the outputs.
template <typename T>
__global__ void band_logdet(const T* __restrict__ L, T* __restrict__ out, int F, int K, int n,
                            double* __restrict__ flags) {
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    double bad = 0.0, chk = 0.0;
    for (int f = blockIdx.x * warps + (threadIdx.x >> 5); f < F; f += gridDim.x * warps) {
        const T* d = L + (long long)f * K * n;
        double acc = 0.0;
        for (int i = lane; i < n; i += 32) {
            const T v = d[i];
            bad += v <= T(0) ? 1.0 : 0.0;
            acc += (double)gvae::log_(v);
        }
        acc = gvae::warp_sum(acc);
        if (lane == 0) {
            out[f] = (T)acc;
            chk += acc;
        }
    }
    gvae::add_flags(flags, bad, chk);
}

// --------------------------------------------------------------------------------------------------
// Exact trace of Sigma = (L L^T)^{-1} (selected inversion; see band_cpu.py) and its gradient
// --------------------------------------------------------------------------------------------------

// Chain (offs = (0, 1)), one thread per factor: s_i = a_i + c_i s_{i+1}, a_i = 1 / L_ii^2,
// c_i = a_i L_{i+1,i}^2; tr = sum_i s_i.
template <typename T>
__global__ void band_trace_chain(const T* __restrict__ L, T* __restrict__ out, int F, int n,
                                 double* __restrict__ flags) {
    double bad = 0.0, chk = 0.0;
    for (int f = blockIdx.x * blockDim.x + threadIdx.x; f < F; f += gridDim.x * blockDim.x) {
        const T* d = L + (long long)f * 2 * n;
        const T* l1 = d + n + 1;  // l1[i] = L_{i+1, i}
        const double rn = 1.0 / (double)d[n - 1];
        double s = rn * rn;
        double tr = s;
        for (int i = n - 2; i >= 0; --i) {
            const double r = 1.0 / (double)d[i];
            const double a = r * r;
            const double v = (double)l1[i];
            s = a + (a * v * v) * s;
            tr += s;
        }
        out[f] = (T)tr;
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
// (W*W + W) doubles per warp of the grid.
template <typename T, bool SHARED>
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
            if (lane == 0) win[s0 * W + s0] = d;
            __syncwarp();
            tr += d;
            s0 = s0 == 0 ? W - 1 : s0 - 1;
        }
        if (lane == 0) {
            out[f] = (T)tr;
            chk += tr;
        }
        __syncwarp();
    }
    gvae::add_flags(flags, bad, chk);
}

// Gradient for the chain, one thread per factor (reverse mode through s_i = a_i + c_i s_{i+1}):
//   out[0, i] = -2 sb_i s_i / L_ii,  out[1, i+1] = 2 sb_i a_i L_{i+1,i} s_{i+1},  sb_{i+1} = g + sb_i c_i,
// sb_0 = g. s is kept in `scratch` (n, F), interleaved so that the threads' stores coalesce.
template <typename T>
__global__ void band_trace_chain_grad(const T* __restrict__ L, const T* __restrict__ g, T* __restrict__ out,
                                      int F, int n, double* __restrict__ scratch, double* __restrict__ flags) {
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
        const double gf = (double)g[f];
        double sb = gf;
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
            sb = gf + sb * (a * v * v);
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

// Gradient for general offsets, one warp per factor: reverse mode through the selected inversion, as
// band_cpu's _trace_band_grad. R[i][d] = Sigma_{i, i+d} (i + d < n) is stored by a forward sweep, Rb holds
// the adjoints of the same entries; Sigma_{m, j} with j < m is read as R[j][m - j]. Lanes run across d.
// scratch: 2 n W doubles per warp of the grid (R, then Rb). out[f] (K, n): g[f] d tr / d L on the band, 0 in the
// slots that do not exist.
template <typename T>
__global__ void band_trace_band_grad(const T* __restrict__ L, const int* __restrict__ offs, const T* __restrict__ g,
                                     T* __restrict__ out, int F, int K, int n, double* __restrict__ scratch,
                                     double* __restrict__ flags) {
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const int W = offs[K - 1] + 1;
    const int slot = blockIdx.x * warps + (threadIdx.x >> 5);  // this warp's scratch, reused per factor
    double* R = scratch + (long long)slot * 2 * n * W;
    double* Rb = R + (long long)n * W;
    double bad = 0.0, chk = 0.0;
    for (int f = slot; f < F; f += gridDim.x * warps) {
        const T* Lf = L + (long long)f * K * n;
        T* gf = out + (long long)f * K * n;
        for (int i = lane; i < n; i += 32) {
            const T v = Lf[i];
            bad += v <= T(0) ? 1.0 : 0.0;
            chk += (double)v;
        }
        // forward sweep, i = n-1 .. 0
        int kmax = 0;
        for (int i = n - 1; i >= 0; --i) {
            while (kmax + 1 < K && i + offs[kmax + 1] < n) ++kmax;
            const double rl = 1.0 / (double)Lf[i];
            const int jend = min(i + W, n);
            for (int d = 1 + lane; d < jend - i; d += 32) {
                const int j = i + d;
                double y = 0.0;
                for (int k = 1; k <= kmax; ++k) {
                    const int m = i + offs[k];
                    const double c = (double)Lf[(long long)k * n + m];
                    y += c * (j < m ? R[(long long)j * W + (m - j)] : R[(long long)m * W + (j - m)]);
                }
                R[(long long)i * W + d] = -rl * y;
            }
            __syncwarp();
            if (lane == 0) {
                double sd = rl;
                for (int k = 1; k <= kmax; ++k) {
                    const int o = offs[k];
                    sd -= (double)Lf[(long long)k * n + i + o] * R[(long long)i * W + o];
                }
                R[(long long)i * W] = rl * sd;
            }
            __syncwarp();
        }
        // reverse sweep, i = 0 .. n-1; row i of Rb is final when step i is reached
        const double gv = (double)g[f];
        for (int i = 0; i < n; ++i)
            for (int d = lane; d < W; d += 32) Rb[(long long)i * W + d] = d == 0 ? gv : 0.0;
        __syncwarp();
        kmax = K - 1;
        for (int i = 0; i < n; ++i) {
            while (kmax > 0 && i + offs[kmax] >= n) --kmax;
            const double Lii = (double)Lf[i];
            const double rl = 1.0 / Lii;
            const int jend = min(i + W, n);
            const double* Ri = R + (long long)i * W;
            double* Rbi = Rb + (long long)i * W;
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
                const int m = i + offs[k];
                const double c = (double)Lf[(long long)k * n + m];
                const double coef = -rl * c;
                double acc = 0.0;
                for (int d = 1 + lane; d < jend - i; d += 32) {
                    const int j = i + d;
                    const double yb = Rbi[d];
                    const long long at = j < m ? (long long)j * W + (m - j) : (long long)m * W + (j - m);
                    acc += yb * R[at];
                    Rb[at] += coef * yb;
                }
                acc = gvae::warp_sum(acc);
                if (lane == 0) gf[(long long)k * n + m] = (T)(-yb0 * rl * Ri[offs[k]] - rl * acc);
                __syncwarp();
            }
            if (lane == 0) gf[i] = (T)(-rlb * rl * rl);
            __syncwarp();
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
