"""A plain JAX VAE whose posterior is gvae's banded-precision Gaussian (``gvae.jax``).

The JAX twin of ``torch_banded_vae.py``: a 784-H-H encoder and an H-H-784 Bernoulli decoder (ELU), optax's
Adam, one ``jit``-compiled step, and as q(z|x) a :class:`gvae.jax.BandedPrecisionNormal` whose factor comes
from the encoder (``extgrid``: the d latent units on an R x C lattice, each linked to its left,
upper-left, upper and upper-right neighbours, the extended grid of Malago & Peste; ``chain``: neighbours
in a line; ``diagonal``: N(mu, diag sigma^2) written in JAX, for comparison). The head is gvae's: mu, then
one row of d values per diagonal of the factor, the main diagonal through softplus + 1e-4.

The data and the reported test ELBO are those of ``torch_banded_vae.py`` (gvae's MNIST, the training images
binarised afresh every epoch, validation and test once with gvae's evaluation seed; the best validation
epoch's test ELBO, one sample per image).

    python examples/jax_banded_vae.py --posterior extgrid --epochs 10 --json extgrid.json
"""
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gvae.jax as gj
from gvae.io.arguments import ArgumentParser
from gvae.io.mnist import load_mnist
from gvae.model.lattice import lattice_shape
from gvae.training.batching import binarize
from gvae.training.batching import EVAL_SEED

FLOOR = 1e-4  # the floor on the factor's diagonal (and on sigma), as in gvae
POSTERIORS = ("diagonal", "chain", "extgrid")
DIAGONALS = {"diagonal": 1, "chain": 2, "extgrid": 5}


def init_mlp(key, sizes):
    """[(W, b)] of dense layers, PyTorch's default initialisation (uniform in +-1/sqrt(fan_in))."""
    params = []
    for key, (a, b) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        kw, kb = jax.random.split(key)
        bound = 1.0 / math.sqrt(a)
        params.append((jax.random.uniform(kw, (a, b), minval=-bound, maxval=bound),
                       jax.random.uniform(kb, (b,), minval=-bound, maxval=bound)))
    return params


def mlp(params, x):
    """ELU between the dense layers, none after the last."""
    for W, b in params[:-1]:
        x = jax.nn.elu(x @ W + b)
    W, b = params[-1]
    return x @ W + b


def init(key, posterior="extgrid", latent=16, hidden=(500, 500)):
    """The encoder's and decoder's parameters."""
    if posterior not in POSTERIORS:
        raise ValueError(f"posterior must be one of {POSTERIORS}, got {posterior!r}")
    ke, kd = jax.random.split(key)
    return {"enc": init_mlp(ke, [784, *hidden, (1 + DIAGONALS[posterior]) * latent]),
            "dec": init_mlp(kd, [latent, *hidden[::-1], 784])}


def posterior_of(params, x, posterior, latent):
    """q(z|x) for a batch x (B, 784): (mu, sigma) for ``diagonal``, else a BandedPrecisionNormal."""
    h = mlp(params["enc"], x)
    mu, raw = h[:, :latent], h[:, latent:].reshape(len(x), -1, latent)
    diag = jax.nn.softplus(raw[:, :1]) + FLOOR
    if posterior == "diagonal":
        return mu, diag[:, 0]
    factor = jnp.concatenate([diag, raw[:, 1:]], axis=1)  # (B, K, d): row k holds L_{i, i - offsets[k]}
    if posterior == "chain":
        return gj.BandedPrecisionNormal.chain(mu, factor)
    return gj.BandedPrecisionNormal.extgrid(mu, factor, *lattice_shape(latent))


def elbo(params, x, key, posterior, latent, eps=None):
    """One-sample ELBO per image, (B,): log p(x|z) at z ~ q(z|x), minus KL(q || N(0, I)) in closed form. z
    is drawn with ``key``, or from the given standard normal noise ``eps`` (B, d) as the draw transforms it
    (z = mu + sigma eps, or mu + L^-T eps)."""
    q = posterior_of(params, x, posterior, latent)
    if posterior == "diagonal":
        mu, sigma = q
        z = mu + sigma * (jax.random.normal(key, mu.shape, mu.dtype) if eps is None else eps)
        kl = 0.5 * (jnp.square(sigma) + jnp.square(mu) - 1.0).sum(-1) - jnp.log(sigma).sum(-1)
    else:
        # the sample and KL(q || N(0, I)) = (tr Sigma + |mu|^2 - d) / 2 + log det L in one kernel call and one
        # backward (gvae.jax.band_head)
        z, _, kl = q.rsample_log_prob_kl(key) if eps is None else gj.band_head(q.factor, q.offsets, q.loc, eps)
    logits = mlp(params["dec"], z)
    rec = (x * logits - jax.nn.softplus(logits)).sum(-1)  # log Bernoulli(x; sigmoid(logits))
    return rec - kl


def make_step(optimizer, posterior, latent):
    """One jitted Adam step on the batch's mean negative ELBO: (params, state, x, key) -> (params, state, loss)."""
    def loss_fn(params, x, key):
        return -elbo(params, x, key, posterior, latent).mean()

    def step(params, state, x, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, key)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss
    return jax.jit(step, donate_argnums=(0, 1))


def mean_elbo(params, x, key, posterior, latent, batch=500):
    f = jax.jit(lambda p, xb, k: elbo(p, xb, k, posterior, latent))
    keys = jax.random.split(key, -(-len(x) // batch))
    return float(np.concatenate([np.asarray(f(params, x[i:i + batch], k), np.float64)
                                 for k, i in zip(keys, range(0, len(x), batch))]).mean())


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--posterior", choices=POSTERIORS, default="extgrid")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--json", default=None, help="write the per-epoch metrics and the results here")
    args = p.parse_args(argv)
    if min(args.epochs, args.batch_size, args.latent, *args.hidden) < 1:
        p.error("--epochs, --batch-size, --latent and --hidden must be >= 1")
    return args


def main(args):
    data = load_mnist()
    train_raw = data["train"][0][:args.limit]
    rng_eval = np.random.default_rng(EVAL_SEED)  # gvae's fixed evaluation sets: valid, then test
    valid, test = (jnp.asarray(binarize(data[s][0], rng_eval)) for s in ("valid", "test"))
    key = jax.random.key(args.seed)
    key, sub = jax.random.split(key)
    params = init(sub, args.posterior, args.latent, tuple(args.hidden))
    optimizer = optax.adam(args.lr)
    state = optimizer.init(params)
    step = make_step(optimizer, args.posterior, args.latent)
    rng = np.random.default_rng(args.seed)
    history, best = [], (-math.inf, 0, None)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        x_all = (rng.random(train_raw.shape, dtype=np.float32) < train_raw).astype(np.float32)
        order = rng.permutation(len(x_all))
        total = 0.0
        for i in range(0, len(x_all), args.batch_size):
            x = x_all[order[i:i + args.batch_size]]
            key, sub = jax.random.split(key)
            params, state, loss = step(params, state, x, sub)
            total += float(loss) * len(x)
        seconds = time.perf_counter() - start
        v = mean_elbo(params, valid, jax.random.key(EVAL_SEED), args.posterior, args.latent)
        if not math.isfinite(v):
            raise SystemExit(f"epoch {epoch}: the validation ELBO is {v}; stopping")
        if v > best[0]:
            best = (v, epoch, jax.tree_util.tree_map(np.asarray, params))
        history.append({"epoch": epoch, "train_elbo": -total / len(x_all), "valid_elbo": v, "seconds": seconds})
        print(f"epoch {epoch}  train ELBO {-total / len(x_all):.3f}  valid ELBO {v:.3f}  {seconds:.1f} s",
              flush=True)
    test_key = jax.random.key(EVAL_SEED)
    test_last = mean_elbo(params, test, test_key, args.posterior, args.latent)
    test_best = mean_elbo(best[2], test, test_key, args.posterior, args.latent)
    print(f"test ELBO {test_best:.2f} (best validation epoch {best[1]}), {test_last:.2f} (last epoch)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "test_elbo_best_valid": test_best, "best_epoch": best[1],
                       "test_elbo_last": test_last, "history": history}, f, indent=1)


if __name__ == "__main__":
    main(parse_args())
