"""gvae's banded kernels called from PyTorch (``gvae.torch``) against calling gvae directly, and the banded
Gaussian against PyTorch's dense one.

    python benchmarks/bench_interop.py --threads 1            # all four tables
    python benchmarks/bench_interop.py --tables overhead size # a subset

Tables (medians of interleaved repeats; the process is pinned to ``--threads`` cores, PyTorch and gvae use
that many threads):

  overhead  per call on a tiny input (a 2 x 2 x 8 chain factor, float64): each ``gvae.torch`` function in
            eager mode, no autograd, against the same ``gvae.kernels`` function on NumPy arrays; the
            difference is what the PyTorch front end adds.
  size      B = 100 factors of d = 256 (chain) and of the 28 x 28 grid, float32: forward alone (against
            ``gvae.kernels``) and forward + backward (``loss.backward()`` on a weighted sum, against gvae's
            own tape, ``gvae.autodiff.value_and_grad`` over ``gvae.ops``, which runs the same VJP kernels).
  dense     rsample + log_prob + KL to N(0, I) + backward, B = 100, float32, the extended grid on an
            r x r lattice (d = 16, 64, 256, 784): ``BandedPrecisionNormal`` against
            ``MultivariateNormal(precision_matrix=L L^T)`` and ``MultivariateNormal(scale_tril=chol(Sigma))``
            with Sigma = cholesky_inverse(L), both dense.
  head      sample + KL to N(0, I) + backward, extended grid, d = 16, B = 100, float32: ``band_head`` (one
            operator, one backward) against ``rsample`` and ``kl_divergence`` (the separate operators).
  vae       one Adam step of examples/torch_banded_vae.py (784-500-500-16 ELU, B = 100): the extended-grid
            posterior (through ``band_head``, and through the separate calls) against the diagonal one,
            interleaved.
"""
import os
import statistics
import sys
import time

import numpy as np
import torch

import gvae.kernels as gk
import gvae.torch as gt
from gvae.io.arguments import ArgumentParser
from gvae import autodiff, ops
from gvae.model.lattice import extgrid_offsets, grid_offsets, lattice_mask

from cpu_model import cpu_model  # benchmarks/cpu_model.py, beside this script

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))  # the example VAE timed here

TABLES = ("overhead", "size", "dense", "head", "vae")


def interleaved(fns, repeats, inner):
    """Median seconds per call of each of ``fns`` ({name: fn}), called ``inner`` times per round, the
    rounds of all functions interleaved so that a change in the machine's load hits them alike."""
    for fn in fns.values():  # warm-up: compilation, allocator, thread pools
        for _ in range(3):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner)
    return {name: statistics.median(ts) for name, ts in times.items()}


def chain_factor(rng, batch, n, dtype):
    """A well-conditioned chain factor (*batch, 2, n): diagonal in [1, 2], off-diagonal in [-0.5, 0.5]."""
    L = rng.uniform(-0.5, 0.5, size=(*batch, 2, n))
    L[..., 0, :] = rng.uniform(1.0, 2.0, size=(*batch, n))
    return L.astype(dtype)


def lattice_factor(rng, batch, offsets, rows, cols, dtype):
    """A factor on a rows x cols lattice with the wrap-around zeroed and a dominant diagonal."""
    n = rows * cols
    L = rng.uniform(-0.3, 0.3, size=(batch, len(offsets), n)) * lattice_mask(offsets, rows, cols)
    L[:, 0, :] = rng.uniform(1.0, 2.0, size=(batch, n))
    return L.astype(dtype)


def overhead_table(args):
    rng = np.random.default_rng(0)
    offsets = (0, 1)
    L = chain_factor(rng, (2,), 8, np.float64)
    b = rng.standard_normal((2, 8))
    Lt, bt = torch.from_numpy(L), torch.from_numpy(b)
    cases = [
        ("band_solve_t", lambda: gk.band_solve_t(L, offsets, b), lambda: gt.band_solve_t(Lt, offsets, bt)),
        ("band_solve", lambda: gk.band_solve(L, offsets, b), lambda: gt.band_solve(Lt, offsets, bt)),
        ("band_matvec_t", lambda: gk.band_matvec_t(L, offsets, b), lambda: gt.band_matvec_t(Lt, offsets, bt)),
        ("band_matvec", lambda: gk.band_matvec(L, offsets, b), lambda: gt.band_matvec(Lt, offsets, bt)),
        ("band_logdet", lambda: gk.band_logdet(L), lambda: gt.band_logdet(Lt)),
        ("band_trace_inv", lambda: gk.band_trace_inv(L, offsets), lambda: gt.band_trace_inv(Lt, offsets)),
        ("band_diag_inv", lambda: gk.band_diag_inv(L, offsets), lambda: gt.band_diag_inv(Lt, offsets)),
    ]
    print("\n## overhead: tiny input (2 x 2 x 8 chain factor, float64), eager, no autograd, us per call")
    print("| function | gvae.kernels | gvae.torch | added |")
    print("| --- | --- | --- | --- |")
    with torch.no_grad():
        for name, direct, front in cases:
            t = interleaved({"direct": direct, "torch": front}, args.repeats, 200)
            print(f"| {name} | {t['direct'] * 1e6:.1f} | {t['torch'] * 1e6:.1f} | "
                  f"{(t['torch'] - t['direct']) * 1e6:.1f} |", flush=True)


def _forward_backward_pairs(L, offsets, v, g):
    """{name: (gvae-tape fn, torch fn)} each running one op forward and its backward for the loss
    sum(op(...) * g), the gradient taken with respect to every float input."""
    Lt, vt, gt_ = (torch.from_numpy(a) for a in (L, v, g))
    Lt.requires_grad_(True)
    vt.requires_grad_(True)
    pairs = {}
    for name in ("band_solve_t", "band_solve", "band_matvec_t", "band_matvec"):
        gop, top = getattr(ops, name), getattr(gt, name)
        vg = autodiff.value_and_grad(lambda L_, v_, gop=gop: ops.sum(gop(L_, offsets, v_, check=False) * g),
                                     argnums=(0, 1))

        def torch_fb(top=top):
            Lt.grad = vt.grad = None
            (top(Lt, offsets, vt, check=False) * gt_).sum().backward()

        pairs[name] = (lambda vg=vg: vg(L, v), torch_fb)
    gn = g[..., 0]
    for name, weight, tweight in (("band_logdet", gn, gt_[..., 0]), ("band_trace_inv", gn, gt_[..., 0]),
                                  ("band_diag_inv", g, gt_)):
        gop, top = getattr(ops, name), getattr(gt, name)
        args_ = () if name == "band_logdet" else (offsets,)
        vg = autodiff.value_and_grad(lambda L_, gop=gop, a=args_, w=weight: ops.sum(gop(L_, *a, check=False) * w))

        def torch_fb(top=top, a=args_, w=tweight):
            Lt.grad = None
            (top(Lt, *a, check=False) * w).sum().backward()

        pairs[name] = (lambda vg=vg: vg(L), torch_fb)
    return pairs


def size_table(args):
    rng = np.random.default_rng(1)
    B = 100
    print("\n## size: B = 100, float32, ms per call; ratio = gvae.torch / direct")
    print("| stencil | function | forward direct | forward torch | ratio | fwd+bwd gvae tape | fwd+bwd torch | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, offsets, L in (("chain d=256", (0, 1), chain_factor(rng, (B,), 256, np.float32)),
                              ("grid 28x28", grid_offsets(28, 28),
                               lattice_factor(rng, B, grid_offsets(28, 28), 28, 28, np.float32))):
        n = L.shape[-1]
        v = rng.standard_normal((B, n)).astype(np.float32)
        g = rng.standard_normal((B, n)).astype(np.float32)
        Lt, vt = torch.from_numpy(L), torch.from_numpy(v)
        forward = {
            "band_solve_t": (lambda: gk.band_solve_t(L, offsets, v, check=False),
                             lambda: gt.band_solve_t(Lt, offsets, vt, check=False)),
            "band_solve": (lambda: gk.band_solve(L, offsets, v, check=False),
                           lambda: gt.band_solve(Lt, offsets, vt, check=False)),
            "band_matvec_t": (lambda: gk.band_matvec_t(L, offsets, v, check=False),
                              lambda: gt.band_matvec_t(Lt, offsets, vt, check=False)),
            "band_matvec": (lambda: gk.band_matvec(L, offsets, v, check=False),
                            lambda: gt.band_matvec(Lt, offsets, vt, check=False)),
            "band_logdet": (lambda: gk.band_logdet(L, check=False), lambda: gt.band_logdet(Lt, check=False)),
            "band_trace_inv": (lambda: gk.band_trace_inv(L, offsets, check=False),
                               lambda: gt.band_trace_inv(Lt, offsets, check=False)),
            "band_diag_inv": (lambda: gk.band_diag_inv(L, offsets, check=False),
                              lambda: gt.band_diag_inv(Lt, offsets, check=False)),
        }
        both = _forward_backward_pairs(L, offsets, v, g)
        for name, (direct, front) in forward.items():
            with torch.no_grad():
                f = interleaved({"direct": direct, "torch": front}, args.repeats, 5)
            tape, torch_fb = both[name]
            fb = interleaved({"tape": tape, "torch": torch_fb}, args.repeats, 3)
            print(f"| {label} | {name} | {f['direct'] * 1e3:.3f} | {f['torch'] * 1e3:.3f} | "
                  f"{f['torch'] / f['direct']:.2f} | {fb['tape'] * 1e3:.3f} | {fb['torch'] * 1e3:.3f} | "
                  f"{fb['torch'] / fb['tape']:.2f} |", flush=True)


def dense_table(args):
    from torch.distributions import MultivariateNormal, kl_divergence
    rng = np.random.default_rng(2)
    B = 100
    print("\n## dense: rsample + log_prob + KL to N(0, I) + backward, extended grid, B = 100, float32, ms")
    print("| d | BandedPrecisionNormal | MVN(precision_matrix) | ratio | MVN(scale_tril) | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in args.lattices:
        d = r * r
        offsets = extgrid_offsets(r, r)
        factor = torch.from_numpy(lattice_factor(rng, B, offsets, r, r, np.float32)).requires_grad_(True)
        loc = torch.from_numpy(rng.standard_normal((B, d)).astype(np.float32)).requires_grad_(True)
        prior = torch.distributions.Normal(0.0, 1.0)
        prior_mvn = MultivariateNormal(torch.zeros(d), scale_tril=torch.eye(d))

        def banded():
            factor.grad = loc.grad = None
            q = gt.BandedPrecisionNormal(loc, factor, offsets, validate_args=False)
            z = q.rsample()
            (q.log_prob(z) + kl_divergence(q, prior)).sum().backward()

        def dense_factor():
            return sum(torch.diag_embed(factor[:, k, o:], offset=-o) for k, o in enumerate(offsets))

        def dense_precision():
            factor.grad = loc.grad = None
            D = dense_factor()
            q = MultivariateNormal(loc, precision_matrix=D @ D.mT, validate_args=False)
            z = q.rsample()
            (q.log_prob(z) + kl_divergence(q, prior_mvn)).sum().backward()

        def dense_scale_tril():
            factor.grad = loc.grad = None
            scale = torch.linalg.cholesky(torch.cholesky_inverse(dense_factor()))
            q = MultivariateNormal(loc, scale_tril=scale, validate_args=False)
            z = q.rsample()
            (q.log_prob(z) + kl_divergence(q, prior_mvn)).sum().backward()

        inner = 20 if d <= 64 else 3 if d <= 256 else 1
        t = interleaved({"band": banded, "precision": dense_precision, "scale_tril": dense_scale_tril},
                        args.repeats if d <= 256 else max(3, args.repeats // 4), inner)
        print(f"| {d} | {t['band'] * 1e3:.3f} | {t['precision'] * 1e3:.2f} | {t['precision'] / t['band']:.1f} | "
              f"{t['scale_tril'] * 1e3:.2f} | {t['scale_tril'] / t['band']:.1f} |", flush=True)


def head_table(args):
    from torch.distributions import kl_divergence
    rng = np.random.default_rng(4)
    B, r = 100, 4
    offsets = extgrid_offsets(r, r)
    factor = torch.from_numpy(lattice_factor(rng, B, offsets, r, r, np.float32)).requires_grad_(True)
    loc = torch.from_numpy(rng.standard_normal((B, r * r)).astype(np.float32)).requires_grad_(True)
    prior = torch.distributions.Normal(0.0, 1.0)

    def head():
        z, _, kl = gt.band_head(factor, offsets, loc, torch.randn(B, r * r))
        (z.sum() + kl.sum()).backward()

    def separate():
        q = gt.BandedPrecisionNormal(loc, factor, offsets, validate_args=False)
        (q.rsample().sum() + kl_divergence(q, prior).sum()).backward()

    t = interleaved({"head": head, "separate": separate}, args.repeats, 50)
    print("\n## head: sample + KL + backward, extended grid 4 x 4, B = 100, float32, us")
    print("| band_head | rsample + kl_divergence | ratio |")
    print("| --- | --- | --- |")
    print(f"| {t['head'] * 1e6:.0f} | {t['separate'] * 1e6:.0f} | {t['separate'] / t['head']:.2f} |")


def vae_table(args):
    import torch.nn.functional as F
    from torch.distributions import kl_divergence
    from torch_banded_vae import VAE, train_step

    class Separate(VAE):
        """The extended-grid model through rsample and kl_divergence, as before band_head."""

        def elbo(self, x, eps=None):
            q = self.q(x)
            rec = -F.binary_cross_entropy_with_logits(self.dec(q.rsample()), x, reduction="none").sum(-1)
            return rec - kl_divergence(q, self.prior)

    rng = np.random.default_rng(3)
    x = torch.from_numpy((rng.random((20, 100, 784)) < 0.3).astype(np.float32))
    runs = {}
    for posterior, cls in (("diagonal", VAE), ("extgrid", VAE), ("separate", Separate)):
        torch.manual_seed(0)
        model = cls("extgrid" if posterior == "separate" else posterior)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        state = {"i": 0}

        def step(model=model, opt=opt, state=state):
            train_step(model, opt, x[state["i"] % len(x)])
            state["i"] += 1

        runs[posterior] = step
    t = interleaved(runs, args.repeats, 10)
    print("\n## vae: one Adam step of examples/torch_banded_vae.py (784-500-500-16 ELU, B = 100), ms")
    print("| diagonal | extgrid | ratio | extgrid, separate calls | ratio |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {t['diagonal'] * 1e3:.2f} | {t['extgrid'] * 1e3:.2f} | {t['extgrid'] / t['diagonal']:.3f} | "
          f"{t['separate'] * 1e3:.2f} | {t['separate'] / t['diagonal']:.3f} |")


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="cores the process is pinned to, and threads")
    p.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    p.add_argument("--repeats", type=int, default=21, help="interleaved rounds per measurement")
    p.add_argument("--lattices", type=int, nargs="+", default=[4, 8, 16, 28],
                   help="r of the r x r lattices of the dense table (d = r^2)")
    args = p.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    if not 1 <= args.threads <= len(cores) or args.repeats < 1 or min(args.lattices) < 2:
        p.error(f"--threads must be in 1..{len(cores)}, --repeats >= 1, --lattices >= 2")
    os.sched_setaffinity(0, set(cores[:args.threads]))
    torch.set_num_threads(args.threads)
    gk.set_threads(args.threads)
    print(f"# {cpu_model()}; {args.threads} thread(s), pinned to cores {cores[:args.threads]}; "
          f"torch {torch.__version__}, numpy {np.__version__}")
    for table in args.tables:
        globals()[f"{table}_table"](args)


if __name__ == "__main__":
    main()
