"""A plain PyTorch VAE on gvae's MNIST: the reference gvae's training quality is measured against.

Benchmark/reference tool, not part of gvae (PyTorch is not a gvae dependency). Same setting as
``gvae train --posterior diagonal --latent 16 --hidden 500 500 --activation elu --epochs 10``: a
784-H-H-2d encoder (mean, then the scale head), a d-H-H-784 decoder of Bernoulli logits, ELU, batch 100,
Adam (lr 1e-3, PyTorch's defaults otherwise; its fused form, the fastest on CPU), the analytic KL, the loss the batch mean of the negative
ELBO. The data are gvae's: the 50,000 training images binarised afresh every epoch, the validation and
test sets binarised once with gvae's evaluation seed (the very observations gvae evaluates on). The
validation ELBO after every epoch picks the best epoch, as gvae does; the test ELBO (one sample per image)
is reported for that epoch and for the last.

The factors gvae differed in are switches, so that each can be moved to gvae's choice one at a time:

* ``--init torch`` (PyTorch's default: weights kaiming_uniform(a=sqrt 5), i.e. U(+-1/sqrt(fan_in)), biases
  U(+-1/sqrt(fan_in))) or ``gvae-he`` (gvae's former initialisation: He normal N(0, 2/fan_in) before
  ELU, Glorot uniform before the linear heads, zero biases);
* ``--scale exp`` (sigma = exp(s / 2), s the log-variance) or ``softplus`` (sigma = softplus(s) + 1e-4);
* ``--out-bias logit-mean``: the decoder's last bias starts at the logit of the training pixel means.

    python examples/torch_reference_vae.py --epochs 10 --threads 1 --seed 0
"""
import json
import math
import os
import time

from gvae.io.arguments import ArgumentParser


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--init", choices=["torch", "gvae-he"], default="torch")
    p.add_argument("--scale", choices=["exp", "softplus"], default="exp")
    p.add_argument("--out-bias", choices=["default", "logit-mean"], default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--json", default=None, help="write the per-epoch metrics and results here")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.threads < 1 or args.batch_size < 1:
        p.error("--epochs, --threads and --batch-size must be >= 1")
    return args


ARGS = parse_args()
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from gvae.io.mnist import load_mnist  # noqa: E402
from gvae.training.batching import binarize  # noqa: E402
from gvae.training.batching import EVAL_SEED  # noqa: E402

FLOOR = 1e-4  # gvae's floor on positive parameters


def gvae_he_init(layer, before_elu):
    """gvae's former MLP.init: He normal before a rectifier, Glorot uniform before a linear output."""
    din, dout = layer.in_features, layer.out_features
    with torch.no_grad():
        if before_elu:
            layer.weight.normal_(0.0, math.sqrt(2.0 / din))
        else:
            limit = math.sqrt(6.0 / (din + dout))
            layer.weight.uniform_(-limit, limit)
        layer.bias.zero_()


def mlp(sizes, init):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b)  # PyTorch's default initialisation
        last = i == len(sizes) - 2
        if init == "gvae-he":
            gvae_he_init(lin, before_elu=not last)
        layers.append(lin)
        if not last:
            layers.append(torch.nn.ELU())
    return torch.nn.Sequential(*layers)


class VAE(torch.nn.Module):
    def __init__(self, args, pixel_mean):
        super().__init__()
        self.d = args.latent
        self.scale = args.scale
        self.enc = mlp([784, *args.hidden, 2 * args.latent], args.init)
        self.dec = mlp([args.latent, *args.hidden[::-1], 784], args.init)
        if args.out_bias == "logit-mean":
            p = np.clip(pixel_mean, 1e-3, 1 - 1e-3)
            with torch.no_grad():
                self.dec[-1].bias.copy_(torch.from_numpy(np.log(p / (1 - p)).astype(np.float32)))

    def sigma(self, s):
        return torch.exp(0.5 * s) if self.scale == "exp" else F.softplus(s) + FLOOR

    def elbo(self, x):
        """Per-image ELBO with one sample, (B,): E log p(x|z) - KL(q || N(0, I)) in closed form."""
        h = self.enc(x)
        mu, sigma = h[:, :self.d], self.sigma(h[:, self.d:])
        z = mu + sigma * torch.randn_like(mu)
        rec = -F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        kl = 0.5 * (sigma ** 2 + mu ** 2 - 1).sum(-1) - torch.log(sigma).sum(-1)
        return rec - kl


@torch.no_grad()
def mean_elbo(model, x, seed, batch=500):
    torch.manual_seed(seed)
    return float(torch.cat([model.elbo(x[i:i + batch]) for i in range(0, len(x), batch)]).double().mean())


def main(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_mnist()
    train_raw = data["train"][0][:args.limit]
    rng_eval = np.random.default_rng(EVAL_SEED)  # as gvae.training.batching.fixed_eval_sets: valid, then test
    valid, test = (torch.from_numpy(binarize(data[s][0], rng_eval)) for s in ("valid", "test"))
    model = VAE(args, train_raw.mean(axis=0))
    # fused=True: the same update in one kernel, PyTorch's fastest Adam on CPU (benchmarks/bench_step.py:
    # 31.2 ms a step against 37.3 for the default on one Zen 1 core), so the epoch times compare gvae with
    # PyTorch at its best.
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)
    rng = np.random.default_rng(args.seed)
    train_raw = torch.from_numpy(train_raw)
    history, best = [], (-math.inf, 0, None)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        x_all = (torch.from_numpy(rng.random(train_raw.shape, dtype=np.float32)) < train_raw).float()
        order = torch.from_numpy(rng.permutation(len(x_all)))
        total = 0.0
        for i in range(0, len(x_all), args.batch_size):
            x = x_all[order[i:i + args.batch_size]]
            loss = -model.elbo(x).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(x)
        seconds = time.perf_counter() - start
        v = mean_elbo(model, valid, EVAL_SEED)
        if v > best[0]:
            best = (v, epoch, {k: t.clone() for k, t in model.state_dict().items()})
        with_eval = time.perf_counter() - start
        history.append({"epoch": epoch, "train_elbo": -total / len(x_all), "valid_elbo": v, "seconds": seconds,
                        "seconds_with_eval": with_eval})
        print(f"epoch {epoch}  train ELBO {-total / len(x_all):.3f}  valid ELBO {v:.3f}  {seconds:.1f} s "
              f"({with_eval:.1f} s with the validation pass)", flush=True)
    test_last = mean_elbo(model, test, EVAL_SEED)
    model.load_state_dict(best[2])
    test_best = mean_elbo(model, test, EVAL_SEED)
    result = {"args": vars(args), "test_elbo_best_valid": test_best, "best_epoch": best[1],
              "test_elbo_last": test_last, "history": history}
    print(f"test ELBO {test_best:.2f} (best validation epoch {best[1]}), {test_last:.2f} (last epoch)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(ARGS)
