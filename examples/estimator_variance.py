"""The variance of score-function gradient estimators on a trained model with binary latent units (a run of
``gvae train --task sbn``): the run's estimator against the plain score function of the same objective,
both unbiased estimates of one gradient. A VIMCO run: the leave-one-out signals against every sample's
signal L_K itself; a one-sample run (NVIL or DARN's Taylor estimator, K = 1): the learned baseline's signal
log w - b(x) (NVIL's runs, which have the baseline network) and DARN's Taylor signals against log w. DARN's
estimator is biased: the last column, the distance of each mean from the least noisy unbiased estimator's,
beside the noise of the means, shows how much.

    python examples/estimator_variance.py RUN_DIR [--batch 100] [--draws 200] [--samples K] [--seed 0]

On one batch of test images, each estimator's gradient of the loss is drawn ``--draws`` times with fresh
samples; the table gives, for the encoder's parameters (the only ones the signals reach; a sigmoid belief
DEF's upward layers ``up*`` with them) and for all, the
mean over parameters of the gradient's variance across draws, and the norm of its mean (both estimators
estimate the same mean, but DARN's), its noise, and its distance from the least noisy unbiased estimator's mean.
K defaults to the run's --iw-samples (NVIL and Taylor: 1).

A run of ``gvae train --task gammadef`` (the sparse gamma DEF): the implicit reparameterisation gradient it
trains with against the score function of the same ELBO, one draw a point
(:func:`gvae.models.gamma_def.model.score_function_loss`), both unbiased.
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


def gradient_moments(loss, params, k, batch, noise_size, dtype, draws, rng, noise=None):
    """(mean, variance) over ``draws`` gradients of ``loss(params, u)`` for fresh uniforms u (k, batch,
    noise_size), float64 vectors over the parameters in sorted order, the variance with ddof 1;
    ``noise(rng, shape, dtype)`` draws u if given. Welford's running moments: the draws are not kept (200
    draws of the deeper DARN's 3.2-million-parameter gradient would take 5.1 GB an estimator)."""
    from gvae import value_and_grad
    names = sorted(params)
    mean = m2 = None
    for i in range(1, draws + 1):
        shape = (k, batch, noise_size)
        u = rng.random(shape).astype(dtype) if noise is None else noise(rng, shape, dtype)
        grads = value_and_grad(lambda p: loss(p, u)[0])(params)[1]
        g = np.concatenate([np.asarray(grads[n], np.float64).ravel() for n in names])
        if mean is None:
            mean, m2 = g.copy(), np.zeros_like(g)
            continue
        delta = g - mean
        mean += delta / i
        m2 += delta * (g - mean)
    return mean, m2 / (draws - 1)


def main(args):
    from gvae.io.mnist import load_mnist
    from gvae.models.binary.model import leave_one_out_signals, nvil_loss, plain_signals, score_loss, taylor_loss
    from gvae.training.batching import EVAL_SEED, binarize
    from gvae.training.runs import load_model
    model, params, config = load_model(args.run)
    x = binarize(load_mnist()["test"][0][:args.batch], np.random.default_rng(EVAL_SEED)).astype(model.dtype)
    plain = {"plain": lambda p, u: score_loss(p, model, x, u, plain_signals)}
    noise, what = None, config.options.estimator
    if config.task == "gammadef":
        from gvae.models.gamma_def.model import gamma_def_loss, open_uniform, score_function_loss
        k, noise, what = 1, open_uniform, "implicit reparameterisation"
        estimators = {"score": lambda p, u: score_function_loss(p, model, x, u),
                      "implicit": lambda p, u: gamma_def_loss(p, model, x, u)}
    elif config.options.estimator in ("nvil", "taylor"):
        k = 1
        estimators = {**plain, "taylor": lambda p, u: taylor_loss(p, model, x, u)}
        if model.baseline is not None:
            estimators["nvil"] = lambda p, u: nvil_loss(p, model, x, u)
    else:
        k = args.samples or config.iw_samples
        estimators = {**plain, "vimco": lambda p, u: score_loss(p, model, x, u, leave_one_out_signals)}
    sizes = {n: params[n].size for n in sorted(params)}
    # the parameters of q, which the score function reaches: the encoder, and a deep model's upward layers
    encoder = np.concatenate([np.full(size, n.startswith(("enc.", "up")), bool) for n, size in sizes.items()])
    print(f"# {args.run}: {what}, K = {k}, {args.batch} test images, {args.draws} draws each")
    results = {}
    for name, loss in estimators.items():
        mean, var = gradient_moments(loss, params, k, len(x), model.noise_size, model.dtype, args.draws,
                                     np.random.default_rng(args.seed), noise)
        results[name] = (var, mean[encoder])
    # The distances are measured from the unbiased estimator with the least variance (the mean of every
    # estimator but DARN's estimates the same gradient); "noise" is the norm the mean of the draws would
    # have from pure noise, sqrt(sum of the variances / draws), the scale those distances compare with.
    unbiased = [n for n in ("implicit", "nvil", "vimco", "plain") if n in results][0]
    print("| estimator | mean variance, encoder | mean variance, all | norm of the mean, encoder | noise of the mean, "
          f"encoder | distance of the mean from {unbiased}'s, encoder |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (var, mean) in results.items():
        noise = np.sqrt(var[encoder].sum() / args.draws)
        print(f"| {name} | {var[encoder].mean():.4g} | {var.mean():.4g} | {np.linalg.norm(mean):.4g} | {noise:.4g} "
              f"| {np.linalg.norm(mean - results[unbiased][1]):.4g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
