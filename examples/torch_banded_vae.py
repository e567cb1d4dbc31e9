"""A plain PyTorch VAE whose posterior is gvae's banded-precision Gaussian (``gvae.torch``).

What a PyTorch user would write: a 784-H-H encoder and an H-H-784 Bernoulli decoder (ELU), Adam, and as
q(z|x) a :class:`gvae.torch.BandedPrecisionNormal` whose factor comes from the encoder. With ``--posterior
extgrid`` the d latent units sit on an R x C lattice (4 x 4 for d = 16) and each is linked to its left,
upper-left, upper and upper-right neighbours (the extended grid of Malago & Peste, "Variational
Autoencoders Endowed with Richer but Still Computationally Efficient Statistical Models"); ``chain``
links neighbours in a line; ``diagonal`` is the standard VAE's N(mu, diag sigma^2) through
``torch.distributions.Normal``, for comparison. The head is gvae's: mu, then one row of d values per
diagonal of the factor, the main diagonal through softplus + 1e-4, the off-diagonals free.

The data are gvae's MNIST (``gvae.io.mnist.load_mnist``): the 50,000 training images binarised afresh every
epoch, the validation and test sets once with gvae's evaluation seed, so the test ELBO compares with
``gvae train --posterior extgrid`` at the same settings. The best validation epoch's test ELBO (one
sample per image) is reported, as gvae does.

    python examples/torch_banded_vae.py --posterior extgrid --epochs 10 --json extgrid.json
"""
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence

from gvae.io.arguments import ArgumentParser
from gvae.io.mnist import load_mnist
from gvae.model.lattice import lattice_shape
from gvae.torch import BandedPrecisionNormal, band_head
from gvae.training.batching import binarize
from gvae.training.batching import EVAL_SEED

FLOOR = 1e-4  # the floor on the factor's diagonal (and on sigma), as in gvae
POSTERIORS = ("diagonal", "chain", "extgrid")


def mlp(sizes):
    """Linear layers with ELU between them, PyTorch's default initialisation."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ELU())
    return torch.nn.Sequential(*layers)


class VAE(torch.nn.Module):
    """Encoder -> q(z|x), decoder -> Bernoulli logits; ``elbo(x)`` is one-sample ELBO per image, (B,)."""

    def __init__(self, posterior="extgrid", latent=16, hidden=(500, 500)):
        super().__init__()
        if posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, got {posterior!r}")
        self.posterior, self.d = posterior, latent
        if posterior == "extgrid":
            self.rows_cols = lattice_shape(latent)  # the most square R x C lattice with R C = d
        diagonals = {"diagonal": 1, "chain": 2, "extgrid": 5}[posterior]
        self.enc = mlp([784, *hidden, (1 + diagonals) * latent])
        self.dec = mlp([latent, *hidden[::-1], 784])
        self.prior = Normal(torch.tensor(0.0), torch.tensor(1.0))  # N(0, I) over the event axis

    def q(self, x):
        """q(z|x) for a batch x (B, 784)."""
        h = self.enc(x)
        mu, raw = h[:, :self.d], h[:, self.d:].unflatten(-1, (-1, self.d))
        diag = F.softplus(raw[:, :1]) + FLOOR
        if self.posterior == "diagonal":
            return Independent(Normal(mu, diag[:, 0]), 1)
        factor = torch.cat([diag, raw[:, 1:]], dim=1)  # (B, K, d): row k holds L_{i, i - offsets[k]}
        if self.posterior == "chain":
            return BandedPrecisionNormal.chain(mu, factor)
        return BandedPrecisionNormal.extgrid(mu, factor, *self.rows_cols)

    def elbo(self, x, eps=None):
        """One-sample ELBO per image (B,), z drawn by ``q.rsample()``, or from the given standard normal
        noise ``eps`` (B, d) as rsample transforms it (z = mu + sigma eps, or mu + L^-T eps)."""
        q = self.q(x)
        if self.posterior == "diagonal":
            z = q.rsample() if eps is None else q.base_dist.loc + q.base_dist.scale * eps
            kl = kl_divergence(q.base_dist, self.prior).sum(-1)
        else:
            # z = mu + L^-T eps and the closed-form KL, (tr Sigma + |mu|^2 - d) / 2 + log det L, in one
            # operator (and one backward): as q.rsample() and kl_divergence(q, self.prior) give them
            eps = torch.randn_like(q.loc) if eps is None else eps
            z, _, kl = band_head(q.factor, q.offsets, q.loc, eps)
        rec = -F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        return rec - kl


def train_step(model, opt, x):
    """One Adam step on the batch's mean negative ELBO; returns that loss."""
    loss = -model.elbo(x).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


@torch.no_grad()
def mean_elbo(model, x, seed, batch=500):
    torch.manual_seed(seed)
    return float(torch.cat([model.elbo(x[i:i + batch]) for i in range(0, len(x), batch)]).double().mean())


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--posterior", choices=POSTERIORS, default="extgrid")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="PyTorch's threads")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--json", default=None, help="write the per-epoch metrics and the results here")
    args = p.parse_args(argv)
    if min(args.epochs, args.threads, args.batch_size, args.latent, *args.hidden) < 1:
        p.error("--epochs, --threads, --batch-size, --latent and --hidden must be >= 1")
    return args


def main(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_mnist()
    train_raw = torch.from_numpy(data["train"][0][:args.limit])
    rng_eval = np.random.default_rng(EVAL_SEED)  # gvae's fixed evaluation sets: valid, then test
    valid, test = (torch.from_numpy(binarize(data[s][0], rng_eval)) for s in ("valid", "test"))
    model = VAE(args.posterior, args.latent, tuple(args.hidden))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)
    rng = np.random.default_rng(args.seed)
    history, best = [], (-math.inf, 0, None)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        x_all = (torch.from_numpy(rng.random(train_raw.shape, dtype=np.float32)) < train_raw).float()
        order = torch.from_numpy(rng.permutation(len(x_all)))
        total = 0.0
        for i in range(0, len(x_all), args.batch_size):
            x = x_all[order[i:i + args.batch_size]]
            total += float(train_step(model, opt, x)) * len(x)
        seconds = time.perf_counter() - start
        v = mean_elbo(model, valid, EVAL_SEED)
        if not math.isfinite(v):
            raise SystemExit(f"epoch {epoch}: the validation ELBO is {v}; stopping")
        if v > best[0]:
            best = (v, epoch, {k: t.clone() for k, t in model.state_dict().items()})
        history.append({"epoch": epoch, "train_elbo": -total / len(x_all), "valid_elbo": v, "seconds": seconds})
        print(f"epoch {epoch}  train ELBO {-total / len(x_all):.3f}  valid ELBO {v:.3f}  {seconds:.1f} s",
              flush=True)
    test_last = mean_elbo(model, test, EVAL_SEED)
    model.load_state_dict(best[2])
    test_best = mean_elbo(model, test, EVAL_SEED)
    print(f"test ELBO {test_best:.2f} (best validation epoch {best[1]}), {test_last:.2f} (last epoch)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "test_elbo_best_valid": test_best, "best_epoch": best[1],
                       "test_elbo_last": test_last, "history": history}, f, indent=1)


if __name__ == "__main__":
    main(parse_args())
