"""GPU benchmark of gvae's CUDA kernels (needs CuPy and a CUDA GPU; PyTorch CUDA optional).

    python examples/bench_cuda.py                 # everything
    python examples/bench_cuda.py --quick         # shorter timing windows
    python examples/bench_cuda.py --no-step       # band kernels only

1. Band kernels: GB/s that each kernel must move (factor, inputs, outputs) on the chain, grid and extended
   grid stencils of an r x r lattice, for a batch of F factors with S samples each, against the
   device-to-device copy bandwidth measured first (cupy.copyto of a 512 MiB buffer: read + write).
   Unchecked calls (``check=False``, as the VJPs make them), so no host round trip is timed.
2. One training step of the 784-500-500-16 ELU VAE (Bernoulli decoder, float32, Adam), batch 100 and
   1000: the forward and backward pass written out with gvae.kernels on CuPy arrays (cuBLAS GEMMs
   through CuPy, the fused bias+activation, Bernoulli, KL, norm and Adam kernels of gvae), against the
   same model in PyTorch CUDA eager with torch.optim.Adam (fused when available), as time ratios.
   The gvae step includes its one host round trip (the gradient norm for clipping comes back as a float).

Every timed block ends with a stream synchronisation inside the timed region; kernels are compiled and
warmed up before timing. Compare ratios within one run.
"""
import math
import sys
import time

import numpy as np

from gvae.io.arguments import ArgumentParser


N_IN, HIDDEN, LATENT = 784, 500, 16


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter timing windows")
    p.add_argument("--sides", type=int, nargs="+", default=[8, 28], help="lattice sides r (n = r^2)")
    p.add_argument("--factors", type=int, nargs="+", default=[100, 10000], help="factors F per call")
    p.add_argument("--samples", type=int, default=1, help="right-hand sides S per factor")
    p.add_argument("--batches", type=int, nargs="+", default=[100, 1000], help="training-step batches")
    p.add_argument("--no-step", action="store_true", help="skip the training-step comparison")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def gpu_timer(sync, min_time):
    """time(fn) -> median seconds per call over blocks of calls, each block synchronised inside."""
    def time_it(fn):
        fn()
        sync()  # compile and warm up outside the timed region
        t0 = time.perf_counter()
        fn()
        sync()
        once = max(time.perf_counter() - t0, 1e-7)
        per_block = max(1, min(1000, int(0.02 / once)))
        blocks = []
        start = time.perf_counter()
        while len(blocks) < 5 or (time.perf_counter() - start < min_time and len(blocks) < 200):
            t0 = time.perf_counter()
            for _ in range(per_block):
                fn()
            sync()
            blocks.append((time.perf_counter() - t0) / per_block)
        return float(np.median(blocks))
    return time_it


# --------------------------------------------------------------------------------------------------
# 1. Band kernels against the copy bandwidth
# --------------------------------------------------------------------------------------------------

def copy_bandwidth(cupy, time_it):
    n = 512 * 1024**2 // 4
    a = cupy.ones(n, dtype=np.float32)
    b = cupy.empty_like(a)
    seconds = time_it(lambda: cupy.copyto(b, a))
    return 2 * a.nbytes / seconds / 1e9


def band_rows(cupy, kernels, time_it, args, rng):
    from gvae.model import lattice
    dtype = np.float32
    item = np.dtype(dtype).itemsize
    rows = []
    for r in args.sides:
        n = r * r
        stencils = {"chain": lattice.chain_offsets(), "grid": lattice.grid_offsets(r, r),
                    "extgrid": lattice.extgrid_offsets(r, r)}
        for stencil, offs in stencils.items():
            K = len(offs)
            for F in args.factors:
                S = args.samples
                L = rng.uniform(-0.2, 0.2, (F, K, n))
                L[:, 0] = rng.uniform(0.5, 2.0, (F, n))
                L = cupy.asarray(L.astype(dtype))
                b = cupy.asarray(rng.standard_normal((S, F, n)).astype(dtype))
                c = cupy.asarray(rng.standard_normal((S, F, n)).astype(dtype))
                g = cupy.ones(F, dtype=dtype)
                fac, vec = F * K * n * item, S * F * n * item
                calls = {
                    "band_solve_t": (lambda: kernels.band_solve_t(L, offs, b, check=False), fac + 2 * vec),
                    "band_solve": (lambda: kernels.band_solve(L, offs, b, check=False), fac + 2 * vec),
                    "band_matvec_t": (lambda: kernels.band_matvec_t(L, offs, b, check=False), fac + 2 * vec),
                    "band_outer": (lambda: kernels.band_outer(b, c, offs, (F,)), 2 * vec + fac),
                    "band_logdet": (lambda: kernels.band_logdet(L, check=False), F * n * item + F * item),
                    "band_trace_inv": (lambda: kernels.band_trace_inv(L, offs, check=False), fac + F * item),
                    "band_trace_inv_grad": (lambda: kernels.band_trace_inv_grad(L, offs, g, check=False),
                                            2 * fac + F * item),
                }
                for name, (fn, nbytes) in calls.items():
                    seconds = time_it(fn)
                    rows.append((stencil, n, F, S, name, seconds, nbytes / seconds / 1e9))
    return rows


# --------------------------------------------------------------------------------------------------
# 2. Training step: gvae kernels on CuPy, and PyTorch CUDA
# --------------------------------------------------------------------------------------------------

def layer_sizes():
    return [(N_IN, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 2 * LATENT), (LATENT, HIDDEN), (HIDDEN, HIDDEN),
            (HIDDEN, N_IN)]


def init_params(rng):
    """He-normal hidden, Glorot-uniform output weights, zero biases (as gvae.model.layers)."""
    out = []
    sizes = layer_sizes()
    for k, (din, dout) in enumerate(sizes):
        last = k in (2, 5)
        if last:
            limit = math.sqrt(6.0 / (din + dout))
            W = rng.uniform(-limit, limit, (din, dout))
        else:
            W = rng.standard_normal((din, dout)) * math.sqrt(2.0 / din)
        out.append((W.astype(np.float32), np.zeros(dout, np.float32)))
    return out


class GvaeCudaStep:
    """The VAE step written out with gvae.kernels on CuPy arrays: parameters and gradients are views into
    two flat buffers, so that the norm and Adam run once over all of them."""

    def __init__(self, cupy, kernels, batch, rng):
        self.cp, self.k, self.B = cupy, kernels, batch
        params = init_params(rng)
        sizes = [W.size + b.size for W, b in params]
        self.flat = cupy.zeros(sum(sizes), np.float32)
        self.grad = cupy.zeros_like(self.flat)
        self.m, self.v = cupy.zeros_like(self.flat), cupy.zeros_like(self.flat)
        self.P, self.G = [], []
        at = 0
        for W, b in params:
            for buf, dst in ((self.flat, self.P), (self.grad, self.G)):
                dst.append((buf[at:at + W.size].reshape(W.shape), buf[at + W.size:at + W.size + b.size]))
            self.P[-1][0][...] = cupy.asarray(W)
            at += W.size + b.size
        self.step_no = 0
        self.zeros_latent = cupy.zeros(LATENT, np.float32)

    def _dense(self, x, layer, act):
        W, b = self.P[layer]
        h = x @ W
        return self.k.bias_activation(h, b, act)

    def __call__(self, x, eps):
        cp, k, B = self.cp, self.k, self.B
        # forward
        h0 = self._dense(x, 0, "elu")
        h1 = self._dense(h0, 1, "elu")
        head = self._dense(h1, 2, "linear")
        mu = head[:, :LATENT]
        sp = cp.ascontiguousarray(head[:, LATENT:])
        k.bias_activation(sp, self.zeros_latent, "softplus")          # softplus(s)
        sigma = sp + np.float32(1e-4)
        z = mu + sigma * eps
        d0 = self._dense(z, 3, "elu")
        d1 = self._dense(d0, 4, "elu")
        logits = self._dense(d1, 5, "linear")
        rec, dlogits = k.bernoulli_loglik(logits, x, want_grad=True)
        kl, (dmu, dsig) = k.diag_normal_kl(mu, sigma, want_grad=True)
        loss = (kl - rec).mean()
        # backward (d loss / d ..., loss = mean over the batch)
        inv = np.float32(1.0 / B)
        g = dlogits * -inv
        outs = [d1, d0, z]
        for layer, act_in in ((5, "linear"), (4, "elu"), (3, "elu")):
            W, _ = self.P[layer]
            gW, gb = self.G[layer]
            y = logits if layer == 5 else (d1 if layer == 4 else d0)
            gh, gbias = k.bias_activation_grad(cp.ascontiguousarray(g), y, act_in)
            gb[...] = gbias
            cp.matmul(outs[5 - layer].T, gh, out=gW)
            g = gh @ W.T
        gz = g
        gmu = gz + dmu * inv
        gsig = gz * eps + dsig * inv
        gs, _ = k.bias_activation_grad(gsig, sp, "softplus")
        ghead = cp.concatenate([gmu, gs], axis=1)
        g = ghead
        ins = [x, h0, h1]
        for layer, y, act in ((2, head, "linear"), (1, h1, "elu"), (0, h0, "elu")):
            W, _ = self.P[layer]
            gW, gb = self.G[layer]
            gh, gbias = k.bias_activation_grad(cp.ascontiguousarray(g), y, act)
            gb[...] = gbias
            cp.matmul(ins[layer].T, gh, out=gW)
            if layer:
                g = gh @ W.T
        norm = math.sqrt(k.sum_squares(self.grad))  # host round trip, as gvae's Trainer does
        self.step_no += 1
        k.adam_update(self.flat, self.grad, self.m, self.v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                      step=self.step_no, scale=min(1.0, 1e3 / max(norm, 1e-30)))
        return loss


def torch_step(torch, batch, rng):
    F = torch.nn.functional
    dev = torch.device("cuda")
    params = init_params(rng)
    Ws = [torch.tensor(W, device=dev, requires_grad=True) for W, _ in params]
    bs = [torch.tensor(b, device=dev, requires_grad=True) for _, b in params]
    try:
        opt = torch.optim.Adam(Ws + bs, lr=1e-3, fused=True)
        name = "torch CUDA eager, fused Adam"
    except Exception:  # noqa: BLE001 - older torch
        opt = torch.optim.Adam(Ws + bs, lr=1e-3)
        name = "torch CUDA eager, Adam"

    def mlp(h, first):
        for j in range(first, first + 3):
            h = h @ Ws[j] + bs[j]
            if j != first + 2:
                h = F.elu(h)
        return h

    def step(x, eps):
        opt.zero_grad(set_to_none=True)
        head = mlp(x, 0)
        mu, s = head[:, :LATENT], head[:, LATENT:]
        sigma = F.softplus(s) + 1e-4
        logits = mlp(mu + sigma * eps, 3)
        rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (mu * mu + sigma * sigma - 1.0).sum(-1) - torch.log(sigma).sum(-1)
        loss = (kl - rec).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(Ws + bs, 1e3)  # the same host round trip as gvae's step
        opt.step()
        return loss
    return name, step


def step_rows(cupy, kernels, time_it, args, rng, torch):
    rows, notes = [], []
    for B in args.batches:
        x_host = (rng.random((B, N_IN)) < 0.3).astype(np.float32)
        eps_host = rng.standard_normal((B, LATENT)).astype(np.float32)
        x, eps = cupy.asarray(x_host), cupy.asarray(eps_host)
        gstep = GvaeCudaStep(cupy, kernels, B, np.random.default_rng(args.seed))
        t_gvae = time_it(lambda: gstep(x, eps))
        row = {"batch": B, "gvae kernels on CuPy": t_gvae}
        if torch is not None:
            name, tstep = torch_step(torch, B, np.random.default_rng(args.seed))
            tx, teps = torch.tensor(x_host, device="cuda"), torch.tensor(eps_host, device="cuda")
            row[name] = gpu_timer(torch.cuda.synchronize, 0.5 if args.quick else 2.0)(lambda: tstep(tx, teps))
        rows.append(row)
    return rows, notes


def main(args):
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as exc:  # noqa: BLE001
        print(f"bench_cuda: needs CuPy and a CUDA GPU ({type(exc).__name__}: {exc})")
        return 1
    from gvae import kernels

    torch = None
    torch_note = "PyTorch rows skipped (--no-torch)" if args.no_torch else None
    if not args.no_torch:
        try:
            import torch as _torch
            if _torch.cuda.is_available():
                torch = _torch
            else:
                torch_note = "PyTorch rows skipped: torch has no CUDA device"
        except ImportError as exc:
            torch_note = f"PyTorch rows skipped: {exc}"

    stream_sync = lambda: cupy.cuda.get_current_stream().synchronize()  # noqa: E731
    time_it = gpu_timer(stream_sync, 0.3 if args.quick else 1.0)
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    rng = np.random.default_rng(args.seed)

    bw = copy_bandwidth(cupy, time_it)
    print(f"device: {name}; CuPy {cupy.__version__}; device-to-device copy {bw:.0f} GB/s (read + write)")
    print()
    print("1. band kernels, float32, unchecked calls; GB/s = bytes the kernel must move / time")
    header = f"{'stencil':<8} {'n':>5} {'F':>6} {'S':>3} {'kernel':<20} {'time us':>10} {'GB/s':>8} {'of copy':>8}"
    print(header)
    print("-" * len(header))
    for stencil, n, F, S, kname, seconds, gbs in band_rows(cupy, kernels, time_it, args, rng):
        print(f"{stencil:<8} {n:>5} {F:>6} {S:>3} {kname:<20} {seconds * 1e6:>10.1f} {gbs:>8.1f} {gbs / bw:>8.1%}")

    if not args.no_step:
        print()
        print(f"2. training step, VAE {N_IN}-{HIDDEN}-{HIDDEN}-{LATENT} ELU, Bernoulli, float32, Adam")
        rows, notes = step_rows(cupy, kernels, time_it, args, rng, torch)
        for row in rows:
            B = row.pop("batch")
            ref = next((k for k in row if k.startswith("torch")), None)
            for label, seconds in row.items():
                ratio = f"{seconds / row[ref]:.2f}x torch" if ref else ""
                print(f"batch {B:>5}  {label:<32} {seconds * 1e3:>8.3f} ms  {ratio}")
        for note in [torch_note, *notes]:
            if note:
                print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
