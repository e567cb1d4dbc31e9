"""examples/jax_banded_vae.py's VAE trained data-parallel in JAX: the batch sharded over devices.

``shard_map`` over a one-axis mesh of D devices: every device holds the parameters (replicated) and its
share of the batch's rows and noise; each computes its rows' ELBO and gradient with gvae's banded kernels,
the shares are added (JAX's differentiation sums a replicated parameter's gradient over the shards
itself; ``psum`` adds the loss), and one optax Adam step follows. Each device's loss is its rows' sum over the
global batch size, so the sum is the gradient of the batch's mean: the D-device step is the one-device
step on the same batch, to rounding (tests/test_jax_sharded.py checks it in float64). The noise of the
global batch is drawn once and split with the rows.

On one machine's CPUs, XLA makes D host devices when told before JAX starts (this script does it from
``--devices``; with GPUs, JAX's devices are the GPUs):

    python examples/jax_sharded_banded_vae.py --devices 2 --posterior extgrid --epochs 1

On several machines, ``jax.distributed.initialize()`` in each process before this runs makes
``jax.devices()`` every process's devices, and the same mesh spans them.
"""
import os
import sys
import time

import numpy as np

from gvae.io.arguments import ArgumentParser
from parallel_args import add_training_args, positive  # examples/parallel_args.py, beside this script


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=2, help="devices the batch is sharded over")
    add_training_args(p)
    args = p.parse_args(argv)
    positive(p, args, "devices", "epochs", "steps", "batch_size", "latent", "hidden")
    if args.batch_size % args.devices:
        p.error(f"--batch-size {args.batch_size} must be a multiple of --devices {args.devices} (each device "
                "takes an equal share of every batch)")
    return args


def host_devices(n):
    """Ask XLA for n host devices; only before JAX starts (it reads XLA_FLAGS once)."""
    if "jax" in sys.modules:
        raise RuntimeError("XLA's host device count must be set before JAX is imported")
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


def make_grad(posterior, latent, devices):
    """jit(shard_map) of (params, x (B, 784), eps (B, d)) -> (mean negative ELBO, its gradient) with the
    rows of x and eps split over the first ``devices`` devices."""
    import jax
    from jax.sharding import Mesh, PartitionSpec as P
    from jax_banded_vae import elbo  # examples/jax_banded_vae.py, beside this script
    shard_map = getattr(jax, "shard_map", None)
    if shard_map is None:
        from jax.experimental.shard_map import shard_map

    def summed(a):
        # The gradient of a replicated parameter is already summed over the shards by JAX's differentiation
        # inside shard_map (it varies over no mesh axis); anything still varying is summed here.
        kind = getattr(jax.typeof(a), "manual_axis_type", None)
        return jax.lax.psum(a, "batch") if kind is None or "batch" in kind.varying else a

    def share(params, x, eps, total):
        loss, grads = jax.value_and_grad(lambda p: -elbo(p, x, None, posterior, latent, eps).sum() / total)(params)
        return summed(loss), jax.tree.map(summed, grads)

    mesh = Mesh(np.array(jax.devices()[:devices]), ("batch",))

    def grad(params, x, eps):
        f = shard_map(lambda p, xs, es: share(p, xs, es, x.shape[0]), mesh=mesh,
                      in_specs=(P(), P("batch"), P("batch")), out_specs=(P(), P()))
        return f(params, x, eps)
    return jax.jit(grad)


def train(args, data):
    """Train on ``data`` (N, 784) pixel intensities in [0, 1]: (the steps' mean losses, the final parameters
    flat as float64 NumPy)."""
    import jax
    import optax
    from jax_banded_vae import init
    dtype = np.dtype(args.dtype)
    if dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    params = jax.tree.map(lambda a: a.astype(dtype), init(jax.random.PRNGKey(args.seed), args.posterior, args.latent,
                                                          tuple(args.hidden)))
    opt = optax.adam(args.lr)
    state = opt.init(params)
    grad = make_grad(args.posterior, args.latent, args.devices)
    update = jax.jit(lambda p, s, g: (lambda u, s2: (optax.apply_updates(p, u), s2))(*opt.update(g, s, p)))
    rng = np.random.default_rng(args.seed)
    raw = np.asarray(data, dtype=np.float64)
    losses = []
    for _ in range(args.epochs):
        x_all = (rng.random(raw.shape) < raw).astype(dtype)
        order = rng.permutation(len(x_all))
        for i in range(0, len(x_all) - args.batch_size + 1, args.batch_size):  # whole batches only
            x = x_all[order[i:i + args.batch_size]]
            eps = rng.standard_normal((len(x), args.latent)).astype(dtype)
            loss, g = grad(params, x, eps)
            params, state = update(params, state, g)
            losses.append(float(loss))
            if args.steps and len(losses) >= args.steps:
                break
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in jax.tree.leaves(params)])
    return losses, flat


def main(args):
    host_devices(args.devices)
    import jax
    if len(jax.devices()) < args.devices:
        raise SystemExit(f"{args.devices} devices asked for, JAX has {len(jax.devices())}: {jax.devices()}")
    from gvae.io.mnist import load_mnist
    data = load_mnist()["train"][0][:args.limit]
    start = time.perf_counter()
    losses, _ = train(args, data)
    print(f"{args.devices} device(s): {len(losses)} steps, mean loss of the last 10 {np.mean(losses[-10:]):.3f}, "
          f"{time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main(parse_args())
