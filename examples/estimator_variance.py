"""The variance of score-function gradient estimators on a trained model with binary latent units (a run of
``gvae train --task sbn``): VIMCO's leave-one-out signals against the plain score function of L_K (every
sample's signal L_K itself), both unbiased estimates of the same gradient.

    python examples/estimator_variance.py RUN_DIR [--batch 100] [--draws 200] [--samples K] [--seed 0]

On one batch of test images, each estimator's gradient of the loss is drawn ``--draws`` times with fresh
samples; the table gives, for the encoder's parameters (the only ones the signals reach) and for all, the
mean over parameters of the gradient's variance across draws, and the norm of its mean (both estimators
estimate the same mean). K defaults to the run's --iw-samples.
"""
import sys

import numpy as np

from gvae.io.arguments import ArgumentParser


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--samples", type=int, default=None, help="K (default: the run's --iw-samples)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.batch, args.draws) < 2 or (args.samples is not None and args.samples < 2):
        p.error("--batch, --draws and --samples must be >= 2")
    return args


def gradient_draws(model, params, x, k, draws, rng, signals):
    """(draws, n_params) gradients of :func:`gvae.model.binary.score_loss` with ``signals``, float64, and
    the parameter names in their order."""
    from gvae import value_and_grad
    from gvae.model.binary import score_loss
    names = sorted(params)
    out = []
    for _ in range(draws):
        u = rng.random((k, len(x), model.noise_size)).astype(model.dtype)
        grads = value_and_grad(lambda p: score_loss(p, model, x, u, signals)[0])(params)[1]
        out.append(np.concatenate([np.asarray(grads[n], np.float64).ravel() for n in names]))
    return np.array(out), names


def main(args):
    from gvae.io.mnist import load_mnist
    from gvae.model.binary import SIGNALS
    from gvae.training.batching import EVAL_SEED, binarize
    from gvae.training.runs import load_model
    model, params, config = load_model(args.run)
    k = args.samples or config.iw_samples
    x = binarize(load_mnist()["test"][0][:args.batch], np.random.default_rng(EVAL_SEED)).astype(model.dtype)
    sizes = {n: params[n].size for n in sorted(params)}
    encoder = np.concatenate([np.full(size, n.startswith("enc."), bool) for n, size in sizes.items()])
    print(f"# {args.run}: K = {k}, {args.batch} test images, {args.draws} draws each")
    print("| estimator | mean variance, encoder | mean variance, all | norm of the mean, encoder |")
    print("| --- | --- | --- | --- |")
    for name, signals in SIGNALS.items():
        g, _ = gradient_draws(model, params, x, k, args.draws, np.random.default_rng(args.seed), signals)
        var = g.var(axis=0, ddof=1)
        print(f"| {name} | {var[encoder].mean():.4g} | {var.mean():.4g} | {np.linalg.norm(g[:, encoder].mean(0)):.4g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
