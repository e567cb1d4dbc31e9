"""examples/torch_banded_vae.py's VAE trained data-parallel with PyTorch's DistributedDataParallel.

Every process holds the whole model (gvae's banded posterior inside it); each global batch of B images is
split between the P processes, each computes its rows' ELBO and gradient, and DDP averages the gradients
across processes (gloo here, on CPUs; NCCL on GPUs) before every process takes the same Adam step. The
noise of the global batch is drawn from one seeded stream in every process and each takes its rows'
share, and each process's loss is its rows' sum times P / B, so that DDP's average is the gradient of the
mean over the whole batch: the P-process step is the one-process step on the same batch, to rounding
(tests/test_torch_ddp.py checks it in float64).

On one machine (P processes spawned here, gloo):

    python examples/torch_ddp_banded_vae.py --processes 2 --posterior extgrid --epochs 1

On several machines, with torchrun starting one process per machine (or per GPU) and this script reading
its rank from the environment torchrun sets:

    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        examples/torch_ddp_banded_vae.py --posterior extgrid --epochs 1
"""
import math
import os
import queue
import socket
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from gvae.io.arguments import ArgumentParser
from parallel_args import add_training_args, positive  # examples/parallel_args.py, beside this script
from torch_banded_vae import VAE  # examples/torch_banded_vae.py, beside this script


class NoisyELBO(torch.nn.Module):
    """The VAE's one-sample ELBO per image (B,) with its standard normal noise given (``VAE.elbo``'s eps):
    DDP wraps a module whose forward takes every input of the step."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x, eps):
        return self.vae.elbo(x, eps)


def rows(batch, rank, world):
    """The rows of a global batch of ``batch`` images that process ``rank`` of ``world`` takes."""
    return np.array_split(np.arange(batch), world)[rank]


def step(model, opt, x, eps, rank, world):
    """One Adam step on the global batch x (B, 784) with noise eps (B, d): this process's rows' loss is
    -sum(ELBO) P / B, so DDP's average of the P gradients is the gradient of the batch's mean loss.
    Returns the batch's mean negative ELBO (all processes' rows)."""
    mine = torch.from_numpy(rows(len(x), rank, world))
    elbo = model(x[mine], eps[mine])
    loss = -elbo.sum() * (world / len(x))
    opt.zero_grad(set_to_none=True)
    loss.backward()  # DDP all-reduces the gradients here
    opt.step()
    total = -elbo.detach().sum()
    if world > 1:
        dist.all_reduce(total)
    return float(total) / len(x)


def train(rank, world, args, data):
    """Train on ``data`` (N, 784) float pixel intensities in [0, 1] as process ``rank`` of ``world``; returns
    (the batches' mean losses, the final parameters as a flat float64 NumPy array)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    dtype = getattr(torch, args.dtype)
    vae = VAE(args.posterior, args.latent, tuple(args.hidden)).to(dtype)
    vae.prior = torch.distributions.Normal(torch.tensor(0.0, dtype=dtype), torch.tensor(1.0, dtype=dtype))
    model = DistributedDataParallel(NoisyELBO(vae)) if world > 1 else NoisyELBO(vae)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)  # one stream, the same in every process
    raw = torch.from_numpy(np.asarray(data, dtype=np.float64)).to(dtype)
    losses = []
    for _ in range(args.epochs):
        x_all = (torch.from_numpy(rng.random(raw.shape)).to(dtype) < raw).to(dtype)
        order = rng.permutation(len(x_all))
        for i in range(0, len(x_all), args.batch_size):
            x = x_all[torch.from_numpy(order[i:i + args.batch_size])]
            eps = torch.from_numpy(rng.standard_normal((len(x), args.latent))).to(dtype)
            losses.append(step(model, opt, x, eps, rank, world))
            if args.steps and len(losses) >= args.steps:
                break
    flat = torch.cat([p.detach().reshape(-1).double() for p in vae.parameters()]).numpy()
    return losses, flat


def _worker(rank, world, args, data, port, results):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        start = time.perf_counter()
        losses, flat = train(rank, world, args, data)
        results.put((rank, losses, flat, time.perf_counter() - start))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(args, data, world):
    """Train in ``world`` processes spawned here (gloo on this machine); returns [(rank, losses, flat,
    seconds)] sorted by rank."""
    ctx = torch.multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = torch.multiprocessing.start_processes(_worker, args=(world, args, data, port, results), nprocs=world,
                                                  join=False, start_method="spawn")
    out = []
    while len(out) < world:  # read before joining: a result larger than the pipe holds its process until read
        try:
            out.append(results.get(timeout=1.0))
        except queue.Empty:
            if procs.join(timeout=0):  # every process ended (join raises the error of one that failed)
                break
    while not procs.join():
        pass
    if len(out) < world:
        raise RuntimeError(f"{world - len(out)} of {world} processes ended without a result")
    return sorted(out, key=lambda r: r[0])


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=None,
                   help="spawn this many processes here (default: the ranks torchrun set, else 1)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch's threads in each process")
    add_training_args(p)
    args = p.parse_args(argv)
    positive(p, args, "processes", "epochs", "steps", "threads", "batch_size", "latent", "hidden")
    return args


def main(args):
    from gvae.io.mnist import load_mnist
    data = load_mnist()["train"][0][:args.limit]
    if "RANK" in os.environ and args.processes is None:  # started by torchrun: one process of many
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        start = time.perf_counter()
        losses, _ = train(rank, world, args, data)
        if rank == 0:
            print(f"{world} processes: {len(losses)} steps, last loss {losses[-1]:.3f}, "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
        dist.destroy_process_group()
        return
    world = args.processes or 1
    if world == 1:
        start = time.perf_counter()
        results = [(0, *train(0, 1, args, data), time.perf_counter() - start)]
    else:
        results = run_processes(args, data, world)
    _, losses, _, seconds = results[0]
    if not all(math.isfinite(v) for v in losses):
        raise SystemExit("a non-finite loss: stopping")
    print(f"{world} process(es): {len(losses)} steps, mean loss of the last 10 {np.mean(losses[-10:]):.3f}, "
          f"{seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main(parse_args())
