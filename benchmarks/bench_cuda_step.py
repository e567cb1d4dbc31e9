"""GPU benchmark of one training step: gvae's own step on CUDA against PyTorch CUDA (needs CuPy, a CUDA
GPU and, for the peers, PyTorch with CUDA).

    python benchmarks/bench_cuda_step.py                          # batch 100 and 1000, ELBO and IWAE k=5
    python benchmarks/bench_cuda_step.py --compile --json s.json  # with torch.compile beside eager

Rows, for each batch and bound (ELBO, or IWAE over ``--iw`` samples) of the 784-500-500-16 ELU VAE
(Bernoulli decoder, float32, Adam):

* ``gvae <family>``: :meth:`gvae.training.Trainer.step` on ``device="cuda"``, the step ``gvae train
  --device cuda`` takes (noise drawn on the GPU, value_and_grad into one flat gradient buffer, the norm
  and the loss read back, fused Adam), for each family of ``--posterior``;
* ``torch eager``: the same model and loss (benchmarks/step_peers.py) with ``torch.optim.Adam(fused=True)``,
  the noise drawn on the GPU and the loss read back every step as gvae reads its;
* ``torch.compile``: the same with the loss and its backward compiled (``--compile``; compile time
  reported apart);
* ``gvae.torch extgrid / diagonal``: examples/torch_banded_vae.py's PyTorch model with gvae's
  ``BandedPrecisionNormal`` on the extended grid, against its own diagonal-q model, on CUDA tensors.

Each step is timed as the median over blocks of steps, each block ended by a device synchronisation.
Ratios are to ``torch eager`` in the same run. Compare ratios within one run.
"""
import json
import os
import sys
import tempfile
import time

import numpy as np

from gvae.io.arguments import ArgumentParser
from step_peers import init_weights, torch_vae  # benchmarks/step_peers.py, beside this script

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))  # the example VAE timed here

N_BATCHES = 8
DEVICE = "cuda"  # gvae's device name and PyTorch's: the CPU when the rows are rehearsed without a GPU


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--iw", type=int, nargs="+", default=[1, 5], help="1 = ELBO, K > 1 = IWAE over K samples")
    p.add_argument("--posterior", nargs="+", default=["diagonal", "extgrid"], help="gvae families to time")
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--compile", action="store_true", help="add torch.compile rows")
    p.add_argument("--no-torch-banded", action="store_true", help="skip the gvae.torch rows")
    p.add_argument("--window", type=float, default=1.0, help="seconds of timing per row")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.batches + args.iw) < 1 or args.window <= 0:
        p.error("--batches and --iw must be >= 1 and --window > 0")
    return args


def timer(sync, window):
    """time(step) -> median seconds per step(i) over blocks of steps, each block synchronised inside."""
    def time_it(step):
        for i in range(3):
            step(i)  # compile, allocate, warm up
        sync()
        t0 = time.perf_counter()
        step(0)
        sync()
        per_block = max(1, min(200, int(0.02 / max(time.perf_counter() - t0, 1e-6))))
        blocks, start, i = [], time.perf_counter(), 0
        while len(blocks) < 5 or (time.perf_counter() - start < window and len(blocks) < 200):
            t0 = time.perf_counter()
            for _ in range(per_block):
                step(i)
                i += 1
            sync()
            blocks.append((time.perf_counter() - t0) / per_block)
        return float(np.median(blocks))
    return time_it


def make_batches(batch, seed):
    """The first MNIST training images (gvae's cache), ``N_BATCHES`` batches binarised stochastically."""
    from gvae.io.mnist import load_mnist
    rng = np.random.default_rng(seed)
    x = np.ascontiguousarray(load_mnist()["train"][0][:batch * N_BATCHES], dtype=np.float32)
    y = np.zeros(len(x), dtype=np.int64)
    data = {"train": (x, y), "valid": (x[:batch], y[:batch]), "test": (x[:batch], y[:batch])}
    binary = (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)
    return data, [np.ascontiguousarray(binary[i * batch:(i + 1) * batch]) for i in range(N_BATCHES)]


def gvae_step(args, data, batches, out, posterior, batch, iw):
    from gvae.kernels import to_device
    from gvae.training import TrainConfig, Trainer
    cfg = TrainConfig(posterior=posterior, latent=args.latent, hidden=(args.hidden, args.hidden), activation="elu",
                      likelihood="bernoulli", batch_size=batch, lr=1e-3, kl="analytic", samples=1, iw_samples=iw,
                      seed=args.seed, dtype="float32")
    trainer = Trainer(cfg, data, out, progress=False, quiet=True, device=DEVICE, overwrite=True)
    xs = [to_device(b, DEVICE) for b in batches]

    def step(i):
        if trainer.step(xs[i % N_BATCHES], 1.0) is None:
            raise RuntimeError("gvae skipped a step (non-finite loss or gradient)")
    return step


def torch_step(torch, args, batches, batch, iw, compiled):
    model = torch_vae(args.latent, iw, init_weights(args.hidden, args.latent, np.random.default_rng(args.seed)),
                      DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    xs = [torch.from_numpy(b).to(DEVICE) for b in batches]
    gen = torch.Generator(device=DEVICE).manual_seed(args.seed)

    def loss_and_backward(x, eps):
        loss = model.loss(x, eps)
        loss.backward()
        return loss.detach()
    run = torch.compile(loss_and_backward) if compiled else loss_and_backward

    def step(i):
        eps = torch.randn((iw, batch, args.latent), generator=gen, device=DEVICE)
        opt.zero_grad(set_to_none=True)
        loss = run(xs[i % N_BATCHES], eps)
        opt.step()
        float(loss)
    return step


def torch_banded_steps(torch, args, batches, batch):
    """{label: step} of examples/torch_banded_vae.py's model (gvae.torch) on CUDA, extgrid and diagonal."""
    from torch_banded_vae import VAE, train_step
    xs = [torch.from_numpy(b).to(DEVICE) for b in batches]
    steps = {}
    for posterior in ("diagonal", "extgrid"):
        torch.manual_seed(args.seed)
        model = VAE(posterior, args.latent, (args.hidden, args.hidden)).to(DEVICE)
        model.prior = torch.distributions.Normal(torch.tensor(0.0, device=DEVICE), torch.tensor(1.0, device=DEVICE))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

        def step(i, model=model, opt=opt):
            float(train_step(model, opt, xs[i % N_BATCHES]))
        steps[f"gvae.torch {posterior}"] = step
    return steps


def main(args):
    from gvae.kernels import device_module
    try:
        cupy = device_module("cuda")  # CuPy reaching a GPU, or a RuntimeError saying what is missing
    except RuntimeError as exc:
        print(f"bench_cuda_step: {exc}")
        return 1
    try:
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
    except Exception as exc:  # noqa: BLE001
        torch, note = None, f"PyTorch rows skipped ({type(exc).__name__}: {exc})"
    else:
        note = None

    def sync():
        cupy.cuda.Device().synchronize()
    time_it = timer(sync, args.window)
    rows = []

    def record(batch, iw, label, seconds, extra=None):
        rows.append({"batch": batch, "iw": iw, "impl": label, "seconds": seconds, **(extra or {})})

    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batches:
            data, batches = make_batches(batch, args.seed)
            for iw in args.iw:
                for posterior in args.posterior:
                    label = f"gvae {posterior}"
                    try:
                        record(batch, iw, label, time_it(gvae_step(args, data, batches, f"{tmp}/{posterior}",
                                                                   posterior, batch, iw)))
                    except Exception as exc:  # noqa: BLE001 - a failing row is reported, the others still run
                        print(f"batch {batch} iw {iw} {label}: FAILED {type(exc).__name__}: {exc}", flush=True)
                if torch is not None:
                    record(batch, iw, "torch eager", time_it(torch_step(torch, args, batches, batch, iw, False)))
                    if args.compile:
                        t0 = time.perf_counter()
                        step = torch_step(torch, args, batches, batch, iw, True)
                        step(0)
                        sync()
                        seconds = time.perf_counter() - t0
                        record(batch, iw, "torch.compile", time_it(step), {"compile_seconds": seconds})
                if torch is not None and iw == 1 and not args.no_torch_banded:
                    try:
                        for label, step in torch_banded_steps(torch, args, batches, batch).items():
                            record(batch, iw, label, time_it(step))
                    except Exception as exc:  # noqa: BLE001
                        print(f"batch {batch} gvae.torch rows: FAILED {type(exc).__name__}: {exc}", flush=True)
                shown = [r for r in rows if r["batch"] == batch and r["iw"] == iw]
                ref = next((r["seconds"] for r in shown if r["impl"] == "torch eager"), None)
                for r in shown:
                    ratio = f"{r['seconds'] / ref:6.2f}x torch eager" if ref else ""
                    extra = f"  (compiled in {r['compile_seconds']:.1f} s)" if "compile_seconds" in r else ""
                    print(f"batch {batch:>5}  {'ELBO' if iw == 1 else f'IWAE k={iw}':<9} {r['impl']:<24} "
                          f"{r['seconds'] * 1e3:>8.3f} ms  {ratio}{extra}", flush=True)
    if note:
        print(f"note: {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cupy": cupy.__version__, "torch": getattr(torch, "__version__", None), "rows": rows}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
