"""Time one training step of the 784-500-500-16 ELU VAE (Bernoulli decoder, float32, Adam).

Compares, in one process and interleaved block by block (so machine noise hits every row alike):

* ``gvae``: :meth:`gvae.training.Trainer.step`, the real training step (value_and_grad of the negative
  ELBO, writing the gradients straight into views of one flat buffer; global norm; one read of the loss
  and the reported means; fused Adam);
* ``gvae phased``: a second Trainer whose step has a timer around each phase it calls
  (value_and_grad, norm, Adam), for the per-phase breakdown;
* PyTorch eager with ``torch.optim.Adam`` (default, ``foreach=True`` and ``fused=True`` when this
  build supports them on CPU), same architecture and initialisation;
* the matrix products alone (forward and backward GEMMs of all six layers through NumPy into
  preallocated outputs), the floor any implementation pays.

Usage: ``python examples/bench_step.py [--repeats 200] [--threads 2]``. Compare ratios from one
run; absolute times on a shared machine drift between runs.
"""
import argparse
import os


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repeats", type=int, default=200, help="timed steps per implementation")
    p.add_argument("--block", type=int, default=10, help="steps per interleaved block")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps per implementation first")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--hidden", type=int, default=500, help="width of both hidden layers")
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="BLAS / OpenMP / Numba / torch threads")
    p.add_argument("--iw", type=int, default=1, help="importance samples (unused for now: ELBO only)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.block < 1 or args.threads < 1:
        p.error("--repeats, --block and --threads must be >= 1")
    return args


ARGS = parse_args()
# Thread counts must be fixed before NumPy (OpenBLAS), Numba or torch load their thread pools.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import gc  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from gvae import kernels  # noqa: E402
from gvae.training import TrainConfig, Trainer  # noqa: E402

N_IN = 784
N_BATCHES = 8  # distinct batches cycled through, so no implementation sees one batch only

try:
    import torch
    import torch.nn.functional as F
    TORCH_ERROR = None
except Exception as exc:  # noqa: BLE001 - any import failure just drops the torch rows
    torch = None
    TORCH_ERROR = f"{type(exc).__name__}: {exc}"


def layer_sizes(args):
    h = args.hidden
    return [(N_IN, h), (h, h), (h, 2 * args.latent), (args.latent, h), (h, h), (h, N_IN)]


def make_data(args, rng):
    n = args.batch * N_BATCHES
    x = rng.random((n, N_IN), dtype=np.float32)
    y = np.zeros(n, dtype=np.int64)
    data = {"train": (x, y), "valid": (x[:args.batch], y[:args.batch]), "test": (x[:args.batch], y[:args.batch])}
    binary = (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)
    batches = [np.ascontiguousarray(binary[i * args.batch:(i + 1) * args.batch]) for i in range(N_BATCHES)]
    return data, batches


# --------------------------------------------------------------------------------------------------
# Implementations: each is a callable(i) that performs step i (batch i % N_BATCHES), or, for the
# phased variant, returns the seconds spent in each phase.
# --------------------------------------------------------------------------------------------------

def gvae_trainer(args, data, out):
    cfg = TrainConfig(latent=args.latent, hidden=(args.hidden, args.hidden), activation="elu",
                      likelihood="bernoulli", batch_size=args.batch, lr=1e-3, kl="analytic",
                      samples=1, seed=args.seed, dtype="float32")
    return Trainer(cfg, data, out, progress=False, quiet=True)


def gvae_step(trainer, batches):
    def step(i):
        if trainer.step(batches[i % N_BATCHES], 1.0) is None:
            raise RuntimeError("gvae skipped a step (non-finite loss or gradient)")
    return step


PHASES = ("forward+backward", "norm", "adam", "other (eps, read)")


def gvae_phased_step(trainer, batches):
    """``trainer.step`` itself, with a timer wrapped around each phase it calls: ``step_fn``
    (value_and_grad, which writes the gradients into the flat buffer's views), ``kernels.sum_squares``
    and ``optimizer.update``. Whatever is left (drawing eps, the one read of the loss and the reported
    means, checks) is "other". Wrapping the callees, rather than re-implementing the step, keeps this in
    step with Trainer.step as it changes."""
    clock = time.perf_counter
    spent = dict.fromkeys(PHASES, 0.0)

    def timed(phase, fun):
        def wrapper(*a, **kw):
            t0 = clock()
            try:
                return fun(*a, **kw)
            finally:
                spent[phase] += clock() - t0
        return wrapper

    trainer.step_fn = timed("forward+backward", trainer.step_fn)
    trainer.optimizer.update = timed("adam", trainer.optimizer.update)
    plain_sum_squares = kernels.sum_squares
    timed_sum_squares = timed("norm", plain_sum_squares)

    def step(i):
        for k in spent:
            spent[k] = 0.0
        kernels.sum_squares = timed_sum_squares  # only while this trainer steps
        try:
            t0 = clock()
            result = trainer.step(batches[i % N_BATCHES], 1.0)
            total = clock() - t0
        finally:
            kernels.sum_squares = plain_sum_squares
        if result is None:
            raise RuntimeError("gvae skipped a step (non-finite loss or gradient)")
        spent[PHASES[-1]] = total - sum(spent[k] for k in PHASES[:-1])
        return tuple(spent[k] for k in PHASES)
    return step


def gemm_floor(args, rng):
    """x@W forward, g@W.T (not for the first layer: no gradient wrt the data) and x.T@g backward."""
    B = args.batch
    ops = []
    for k, (din, dout) in enumerate(layer_sizes(args)):
        x = rng.standard_normal((B, din), dtype=np.float32)
        W = rng.standard_normal((din, dout), dtype=np.float32)
        g = rng.standard_normal((B, dout), dtype=np.float32)
        h, gx, gW = np.empty((B, dout), np.float32), np.empty((B, din), np.float32), np.empty_like(W)
        ops.append((np.matmul, x, W, h))
        if k > 0:
            ops.append((np.matmul, g, W.T, gx))
        ops.append((np.matmul, x.T, g, gW))
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for _, a, b, _ in ops)

    def step(i):
        for mm, a, b, o in ops:
            mm(a, b, out=o)
    return step, flops


class TorchVAE(torch.nn.Module if torch is not None else object):
    """Encoder and decoder MLPs as in gvae: ELU hidden layers, He-normal hidden weights, Glorot-uniform
    output weights, zero biases; sigma = softplus(s) + 1e-4."""

    def __init__(self, args):
        super().__init__()
        sizes = layer_sizes(args)
        self.latent = args.latent
        self.enc = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in sizes[:3])
        self.dec = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in sizes[3:])
        with torch.no_grad():
            for mlp in (self.enc, self.dec):
                for k, lin in enumerate(mlp):
                    din = lin.in_features
                    if k < len(mlp) - 1:
                        lin.weight.normal_(0.0, math.sqrt(2.0 / din))
                    else:
                        limit = math.sqrt(6.0 / (din + lin.out_features))
                        lin.weight.uniform_(-limit, limit)
                    lin.bias.zero_()

    @staticmethod
    def _mlp(layers, h):
        for lin in layers[:-1]:
            h = F.elu(lin(h))
        return layers[-1](h)

    def loss(self, x, eps):
        head = self._mlp(self.enc, x)
        mu, s = head[:, :self.latent], head[:, self.latent:]
        sigma = F.softplus(s) + 1e-4
        z = mu + sigma * eps
        logits = self._mlp(self.dec, z)
        rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (mu * mu + sigma * sigma - 1.0).sum(-1) - torch.log(sigma).sum(-1)
        return (kl - rec).mean()


def torch_steps(args, batches):
    """{name: step} for torch.optim.Adam in its default, foreach and fused forms (when supported)."""
    torch.set_num_threads(args.threads)
    xs = [torch.from_numpy(b) for b in batches]
    variants = [("torch eager, Adam", {}), ("torch eager, Adam foreach", {"foreach": True}),
                ("torch eager, Adam fused", {"fused": True})]
    steps, notes = {}, []
    for name, kw in variants:
        torch.manual_seed(args.seed)
        model = TorchVAE(args)
        try:
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, **kw)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"{name}: not available ({type(exc).__name__}: {exc})")
            continue
        gen = torch.Generator().manual_seed(args.seed)

        def step(i, model=model, opt=opt, gen=gen):
            eps = torch.randn((args.batch, args.latent), generator=gen)
            opt.zero_grad(set_to_none=True)
            loss = model.loss(xs[i % N_BATCHES], eps)
            loss.backward()
            opt.step()
            float(loss.detach())
        try:
            step(0)
        except Exception as exc:  # noqa: BLE001 - e.g. fused Adam without a CPU kernel
            notes.append(f"{name}: not available ({type(exc).__name__}: {exc})")
            continue
        steps[name] = step
    return steps, notes


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------

def run_interleaved(impls, phased, repeats, block, warmup):
    """Alternate blocks of ``block`` steps between implementations, rotating their order every round.

    Returns ({name: per-step seconds}, {name: per-round block medians}, per-step phase times)."""
    for step in [*impls.values(), phased]:
        for i in range(warmup):
            step(i)
    names = list(impls) + ["__phased__"]
    times = {n: [] for n in names}
    rounds = {n: [] for n in names}
    phase_rows = []
    clock = time.perf_counter
    n_rounds = -(-repeats // block)
    gc.collect()
    for r in range(n_rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            block_times = []
            for j in range(block):
                i = r * block + j
                if name == "__phased__":
                    row = phased(i)
                    phase_rows.append(row)
                    block_times.append(sum(row))
                else:
                    t0 = clock()
                    impls[name](i)
                    block_times.append(clock() - t0)
            times[name] += block_times
            rounds[name].append(float(np.median(block_times)))
    return times, rounds, np.array(phase_rows)


def summary(ts):
    q25, q50, q75 = np.percentile(np.asarray(ts) * 1e3, [25, 50, 75])
    return q50, q25, q75


def paired_ratio(rounds, name, ref):
    """Median over rounds of (block median of ``name`` / block median of ``ref``): noise that hits one
    round hits both and cancels."""
    return float(np.median(np.asarray(rounds[name]) / np.asarray(rounds[ref])))


def main(args):
    rng = np.random.default_rng(args.seed)
    data, batches = make_data(args, rng)
    if args.iw != 1:
        print(f"note: --iw {args.iw} ignored (this benchmark times the ELBO step only for now)")
    torch_note = None
    with tempfile.TemporaryDirectory() as out:
        trainer = gvae_trainer(args, data, out)
        impls = {"gvae Trainer.step": gvae_step(trainer, batches)}
        phased = gvae_phased_step(gvae_trainer(args, data, out), batches)  # its own, instrumented
        floor_step, floor_flops = gemm_floor(args, rng)
        impls["GEMMs alone (NumPy)"] = floor_step
        notes = []
        if args.no_torch:
            torch_note = "PyTorch rows skipped (--no-torch)"
        elif torch is None:
            torch_note = f"PyTorch rows skipped: torch not importable ({TORCH_ERROR})"
        else:
            tsteps, notes = torch_steps(args, batches)
            impls.update(tsteps)

        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        times, rounds, phases = run_interleaved(impls, phased, args.repeats, args.block, args.warmup)
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()[0]

    n_params = trainer.params.size
    print(f"VAE {N_IN}-{args.hidden}-{args.hidden}-{args.latent} ELU, Bernoulli, batch {args.batch}, "
          f"float32, Adam; {n_params:,} parameters")
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # noqa: BLE001 - show_config's layout differs between NumPy versions
        blas = "?"
    tinfo = f", torch {torch.__version__} {torch.get_num_threads()}t" if "torch" in " ".join(impls) else ""
    print(f"threads {args.threads} (NumPy BLAS: {blas}{tinfo}); {args.repeats} steps each in blocks of "
          f"{args.block}, interleaved; {wall:.1f} s")
    cores = os.cpu_count() or 1
    print(f"1-minute load average {load_before:.1f} before, {load_after:.1f} after, on {cores} cores")
    if max(load_before, load_after) > cores - 0.5:
        print("warning: the machine is busy; threaded BLAS/OpenMP collapse when other processes hold the "
              "cores (try --threads 1), and absolute times mean little")
    print()
    ref = "torch eager, Adam" if "torch eager, Adam" in impls else None
    header = f"{'implementation':<28} {'median ms':>10} {'IQR ms':>16} {'vs torch eager':>15}"
    print(header)
    print("-" * len(header))
    rows = list(impls) + ["__phased__"]
    for name in rows:
        med, q25, q75 = summary(times[name])
        ratio = f"{paired_ratio(rounds, name, ref):.2f}x" if ref else "-"
        label = "gvae phased (sum of phases)" if name == "__phased__" else name
        print(f"{label:<28} {med:>10.2f} {f'[{q25:.2f}, {q75:.2f}]':>16} {ratio:>15}")
    med_floor = np.median(times["GEMMs alone (NumPy)"])
    print(f"(GEMM floor: {floor_flops / 1e9:.2f} GFLOP per step, {floor_flops / med_floor / 1e9:.0f} GFLOP/s; "
          f"ratios are medians of per-round ratios)")
    for note in [torch_note, *notes]:
        if note:
            print(f"note: {note}")

    print()
    print("gvae Trainer.step by phase (timers around the callees, in the phased steps):")
    total = np.median(phases.sum(axis=1))
    header = f"{'phase':<20} {'median ms':>10} {'IQR ms':>16} {'share':>7}"
    print(header)
    print("-" * len(header))
    for k, name in enumerate(PHASES):
        med, q25, q75 = summary(phases[:, k])
        print(f"{name:<20} {med:>10.3f} {f'[{q25:.3f}, {q75:.3f}]':>16} {med / (total * 1e3):>7.1%}")
    print(f"{'total':<20} {total * 1e3:>10.3f}")
    print(f"forward+backward over the GEMM floor: {np.median(phases[:, 0]) / med_floor:.2f}x")


if __name__ == "__main__":
    main(ARGS)
