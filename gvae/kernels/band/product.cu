// CUDA twin of product_cpu.py: products with a banded factor, y = L x and y = L^T x, and band_outer,
// the band-restricted outer products of their gradients (layouts and flags: band_common.cuh).
//
// No recurrence: one thread per output element, consecutive threads on consecutive i (coalesced),
// grid-stride over the rest.
#include "band_common.cuh"

// y[s, f] = L_f x[s, f], or L_f^T x[s, f] when TRANSPOSED:
//   y_i = L_ii x_i + sum_{k >= 1, 0 <= m < n} L_{i,m} x_m,   m = i - o_k (i + o_k when TRANSPOSED),
// the entry linking rows i and m being column max(i, m) of diagonal k.
// Element e = r * n + i of the (S, F, n) output, r = s * F + f.
template <typename T, bool TRANSPOSED>
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
            const int m = TRANSPOSED ? i + offs[k] : i - offs[k];
            if (TRANSPOSED ? m < n : m >= 0) acc += Lf[(long long)k * n + (TRANSPOSED ? m : i)] * xv[m];
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

// out[q, f, k, i] = scale * sum_{s in chunk q} a[s, f, i] c[s, f, i - o_k]  (0 for i < o_k), chunk q =
// [q S / Q, (q+1) S / Q). One thread per (q, f, i), the diagonals eight at a time in registers, the
// samples summed in order (as product_cpu's band_outer). a, c (S, F, n); out (Q, F, K, n).
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
