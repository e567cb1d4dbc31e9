"""A two-layer deep GP (Damianou and Lawrence 2013) against a one-layer Bayesian GP-LVM (Titsias and
Lawrence 2010) and a VAE on a subset of MNIST: the GPs trained by full-batch Adam on their collapsed bounds
(:func:`gvae.models.deep_gp.model.deep_gp_bound`, :func:`gvae.models.deep_gp.model.gplvm_bound`), the VAE on its ELBO, float64,
same latent size, same data and scale.

    python examples/deep_gp_mnist.py --out DIR --images 500 --latent 5 --hidden 10 --inducing 30 \\
        --steps 1500 [--vae-hidden 200 --vae-steps 5000 --vae-lr 0.001] [--held-out-steps 500] [--seed 0]

``--out DIR`` (a new folder, or one this script wrote: the run then resumes where its last checkpoint
left it, every 100 steps, written atomically) receives each model's parameters and Adam state
(``gplvm.npz``, ``deep.npz``, ``vae.npz``, and the GPs' held-out fits ``gplvm_held_out_STEPS.npz``,
``deep_held_out_STEPS.npz``, named by the training steps they were fitted after) and ``results.json``.

The VAE is the GPs' model with a network for a GP (Kingma and Welling 2014): z ~ N(0, I_q), y ~ N(f(z),
s^2 I) with one noise variance s^2 for every pixel as the GPs have, f a tanh network of ``--vae-hidden``
units, q(z|y) diagonal from a network of the same width; full-batch Adam on the ELBO, one reparameterised
draw per image and step (the draws of step t from the generator seeded (seed, t), so a resumed run draws
what a straight one does). Its bound per image is the ELBO averaged over 100 draws per image; it is also
given on held-out images (the next ``--images`` training images, centred by the same mean), which the
VAE's encoder reaches without fitting anything.

The GPs' held-out density follows Titsias and Lawrence (2010, their test-time prediction): log p(Y*|Y) ~
F(Y, Y*) - F(Y), F the collapsed bound, F(Y, Y*) that of the training and held-out images together with
everything the training fitted held fixed (kernels, inducing inputs, noise, the training images' latent
posteriors) and the held-out images' latent posteriors q(X*) (and, for the deep GP, q(H*)) fitted by
``--held-out-steps`` steps of full-batch Adam, each starting from the posterior of its nearest training
image (in pixel space). The difference of two bounds is an estimate, not a bound.

Data: the first ``--images`` training images of MNIST (as ``gvae train`` loads it), intensities in [0, 1]
minus their mean image (the GPs have zero mean). Both models start from the data's principal components
(the GP-LVM's latent; the deep GP's hidden layer, and its top latent from the hidden layer's), inducing
inputs at random latent points, unit lengthscales and signal variance, noise variance 0.1. Prints and
writes the bound per image (nats, a lower bound on the model's log p(Y) of the training images, which are
also what the variational parameters were fitted to) and the mean squared error per pixel of the images
rebuilt from their latent posteriors (the last GP layer's predictive mean).
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

from gvae import value_and_grad
from gvae.io.arguments import ArgumentParser


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--latent", type=int, default=5, help="q, the top latent's size (both models)")
    p.add_argument("--hidden", type=int, default=10, help="the deep GP's hidden layer's size")
    p.add_argument("--inducing", type=int, default=30, help="inducing inputs per GP layer")
    p.add_argument("--steps", type=int, default=1500, help="Adam steps (full batch)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--vae-hidden", type=int, default=200, help="the VAE's networks' hidden units")
    p.add_argument("--vae-steps", type=int, default=5000, help="the VAE's Adam steps (full batch)")
    p.add_argument("--vae-lr", type=float, default=0.001)
    p.add_argument("--held-out-steps", type=int, default=500,
                   help="Adam steps fitting the held-out images' latent posteriors for the GPs' held-out density")
    p.add_argument("--out", required=True, help="the run folder (resumed when it holds a checkpoint)")
    p.add_argument("--picture", default=None, help="also draw both models' latent means here (PNG; matplotlib)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.images, args.latent, args.hidden, args.inducing, args.steps, args.vae_hidden, args.vae_steps,
           args.held_out_steps) < 1 or not (args.lr > 0 and args.vae_lr > 0):
        p.error("--images, --latent, --hidden, --inducing, --steps, --vae-hidden, --vae-steps and --held-out-steps "
                "must be >= 1, --lr and --vae-lr > 0")
    if args.inducing > args.images:
        p.error(f"--inducing ({args.inducing}) must not exceed --images ({args.images})")
    # The models start from principal components: the deep GP's hidden layer from the images' (N centred
    # images have N - 1), its top latent from the hidden layer's.
    if args.hidden >= args.images:
        p.error(f"--hidden ({args.hidden}) must be below --images ({args.images}): the hidden layer starts at the "
                f"images' principal components, and N centred images have N - 1")
    if args.latent > args.hidden:
        p.error(f"--latent ({args.latent}) must not exceed --hidden ({args.hidden}): the deep GP's top latent starts "
                "at the hidden layer's first principal components")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    return args


def principal_components(Y, k):
    """The first k principal component scores of Y (n, p), scaled to unit variance."""
    U, s, _ = np.linalg.svd(Y - Y.mean(0), full_matrices=False)
    scores = U[:, :k] * s[:k]
    return scores / scores.std(0)


def layer(rng, inputs, m):
    """Log-parameterised (Z, log lengthscales, log variance, log noise) of a GP layer on ``inputs``."""
    return {"Z": inputs[rng.choice(len(inputs), m, replace=False)].copy(), "log_ls": np.zeros(inputs.shape[1]),
            "log_v": np.array(0.0), "log_s": np.array(np.log(0.1))}


def unpack(ops, lp):
    return lp["Z"], ops.exp(lp["log_ls"]), ops.exp(lp["log_v"]), ops.exp(lp["log_s"])


def gplvm_objective(params, Y):
    from gvae import ops
    from gvae.models.deep_gp.model import gplvm_bound
    return -gplvm_bound(params["mu_x"], ops.exp(params["log_S_x"]), Y, *unpack(ops, params["layer"]))


def deep_objective(params, Y):
    from gvae import ops
    from gvae.models.deep_gp.model import deep_gp_bound
    return -deep_gp_bound(params["mu_x"], ops.exp(params["log_S_x"]), params["mu_h"], ops.exp(params["log_S_h"]), Y,
                          [unpack(ops, params["top"]), unpack(ops, params["out"])])


class Vae:
    """The VAE of the module's docstring: ``params`` a flat dict (``enc.*``, ``dec.*``, ``log_s``)."""

    def __init__(self, p, q, hidden):
        from gvae.model.layers import MLP
        from gvae.model.vae import layer_family
        self.q, self.p = q, p
        self.encoder = MLP([p, hidden, 2 * q], "tanh", "enc.")
        self.decoder = MLP([q, hidden, p], "tanh", "dec.")
        self.family = layer_family("diagonal", q)

    def new_params(self, rng):
        params = {"log_s": np.array(np.log(0.1))}
        for net in (self.encoder, self.decoder):
            params.update({name: np.zeros(shape) for name, shape in net.shapes().items()})
            net.init(rng, params, "uniform")
        return params

    def terms(self, params, Y, eps):
        """(E log p(y|z), KL(q(z|y) || N(0, I))) summed over the images, with the draws eps (S, n, q)."""
        from gvae import ops
        from gvae.model.gaussian import LOG_2PI
        q = self.family.split(self.encoder(params, Y), self.q)
        r = Y - self.decoder(params, self.family.sample(q, eps))
        s2 = ops.exp(params["log_s"])
        loglik = -0.5 * ops.sum(r * r, axis=-1) / s2 - 0.5 * self.p * (ops.log(s2) + LOG_2PI)
        return ops.sum(ops.mean(loglik, axis=0)), ops.sum(self.family.kl(q))

    def objective(self, params, Y, eps):
        rec, kl = self.terms(params, Y, eps)
        return kl - rec

    def noise(self, seed, n):
        """The draws of step t: (1, n, q) from the generator seeded (seed, t)."""
        return lambda t: (np.random.default_rng([seed, t]).standard_normal((1, n, self.q)),)

    def bound(self, params, Y, seed):
        """The ELBO per image of Y, averaged over 100 draws per image (from the generator seeded (seed, 0))."""
        eps = np.random.default_rng([seed, 0]).standard_normal((100, len(Y), self.q))
        return -float(self.objective(params, Y, eps)) / len(Y)

    def kl_per_unit(self, params, Y):
        """Each latent unit's KL(q(z_j|y) || N(0, 1)) averaged over the images, (q,)."""
        from gvae import ops
        q = self.family.split(self.encoder(params, Y), self.q)
        return np.asarray(ops.diag_normal_kl(q.mu[..., None], q.sigma[..., None])).mean(0)

    def means(self, params, Y):
        return np.asarray(self.family.split(self.encoder(params, Y), self.q).mu)

    def rebuilt(self, params, Y):
        """The decoder's output at the posterior means, (n, p)."""
        return np.asarray(self.decoder(params, self.family.split(self.encoder(params, Y), self.q).mu))


def _leaves(tree, prefix=""):
    """[(dotted name, array)] of a dict of dicts of arrays, in a fixed order."""
    return [item for k in sorted(tree) for item in
            (_leaves(tree[k], f"{prefix}{k}.") if isinstance(tree[k], dict) else [(prefix + k, tree[k])])]


def _save(path, params, m, v, t):
    tmp = path.with_suffix(".tmp.npz")
    arrays = {f"p.{k}": x for k, x in _leaves(params)}
    arrays.update({f"m.{k}": x for (k, _), x in zip(_leaves(params), m)})
    arrays.update({f"v.{k}": x for (k, _), x in zip(_leaves(params), v)})
    np.savez(tmp, step=np.array(t), **arrays)
    tmp.replace(path)


def adam(objective, params, Y, steps, lr, label, path, noise=lambda t: ()):
    """Full-batch Adam on the dict (of dicts) of arrays ``params``, resumed from and checkpointed to
    ``path``, ``objective(params, Y, *noise(t))`` at step t; returns the seconds of this process."""
    m = [np.zeros_like(x) for _, x in _leaves(params)]
    v = [np.zeros_like(x) for _, x in _leaves(params)]
    start = 0
    if path.exists():
        with np.load(path) as saved:
            for (k, x), mi, vi in zip(_leaves(params), m, v):
                x[...], mi[...], vi[...] = saved[f"p.{k}"], saved[f"m.{k}"], saved[f"v.{k}"]
            start = int(saved["step"])
        print(f"{label}: resumed at step {start}", flush=True)
    step = value_and_grad(objective)
    t0 = time.perf_counter()
    for t in range(start + 1, steps + 1):
        loss, grad = step(params, Y, *noise(t))
        if not np.isfinite(loss):
            raise SystemExit(f"deep_gp_mnist: {label}: the bound is not finite at step {t}; the last good "
                             f"checkpoint is {path}")
        for (_, x), (_, g), mi, vi in zip(_leaves(params), _leaves(grad), m, v):
            mi[...] = 0.9 * mi + 0.1 * g
            vi[...] = 0.999 * vi + 0.001 * g * g
            x -= lr * (mi / (1 - 0.9 ** t)) / (np.sqrt(vi / (1 - 0.999 ** t)) + 1e-8)
        if t % 100 == 0 or t == steps:
            _save(path, params, m, v, t)
        if t == 1 or t % max(1, steps // 10) == 0:
            print(f"{label}: step {t}: bound per image {-float(loss) / len(Y):.2f} nats", flush=True)
    return time.perf_counter() - t0


def held_out_fit(objective, params, Y, Y_new, steps, lr, label, path):
    """F(Y, Y_new) - F(Y) per held-out image (the module's docstring): the latent posteriors of Y_new
    (``params``' per-image entries, ``mu_*`` and ``log_S_*``) fitted with everything else held at ``params``,
    each starting from its nearest training image's; returns (estimate per image, seconds)."""
    from gvae import ops
    rows = [k for k in params if k.startswith(("mu_", "log_S_"))]
    nearest = np.argmin((Y_new ** 2).sum(1)[:, None] - 2 * Y_new @ Y.T + (Y ** 2).sum(1)[None, :], axis=1)
    new = {k: params[k][nearest].copy() for k in rows}
    both = np.concatenate([Y, Y_new])

    def joint(new, Y_both):
        return objective({**params, **{k: ops.concatenate2(params[k], new[k], axis=0) for k in rows}}, Y_both)
    seconds = adam(joint, new, both, steps, lr, label, path)
    return (float(objective(params, Y)) - float(joint(new, both))) / len(Y_new), seconds


def reconstruction(mu, S, Y, lp):
    """The GP layer's predictive mean at its inputs' distributions q = N(mu, diag S) (Titsias and Lawrence
    2010): psi1 (Kmm + psi2 / s^2)^-1 psi1^T Y / s^2, (n, p)."""
    from gvae import ops
    from gvae.models.deep_gp.model import rbf_psi_statistics
    Z, ls, v, s2 = unpack(np, lp)
    _, psi1, psi2 = rbf_psi_statistics(mu, S, Z, ls, v)
    Kmm = ops.rbf_kernel(Z, Z, ls, v)
    return psi1 @ np.linalg.solve(Kmm + psi2 / s2 + 1e-6 * np.eye(len(Z)), psi1.T @ Y) / s2


def latent_picture(path, models, labels):
    """The latent means of each model ({title: (mu (n, q), relevance (q,), what the relevance is)}) on
    their two most relevant axes (a GP's smallest lengthscales, a VAE's largest KL terms), one colour per
    digit."""
    from gvae.plots import canvas
    fig = canvas.new_figure(5.0 * len(models), 4.6, layout="constrained")
    for k, (title, (mu, relevance, what)) in enumerate(models.items()):
        a, b = np.argsort(relevance)[:2] if what == "lengthscale" else np.argsort(relevance)[::-1][:2]
        ax = fig.add_subplot(1, len(models), k + 1)
        points = ax.scatter(mu[:, a], mu[:, b], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=6)
        ax.set_title(title)
        ax.set_xlabel(f"latent axis {a} ({what} {relevance[a]:.2f})")
        ax.set_ylabel(f"latent axis {b} ({what} {relevance[b]:.2f})")
    fig.colorbar(points, ax=fig.axes, ticks=range(10), label="digit")
    return canvas.save(fig, path)


def main(args):
    from gvae.io.mnist import load_mnist
    out = Path(args.out)
    settings = {k: getattr(args, k) for k in ("images", "latent", "hidden", "inducing", "lr", "seed", "vae_hidden",
                                              "vae_lr", "held_out_steps")}
    if out.exists():
        try:
            # a folder written before the VAE (or the held-out fits) was added holds runs that any such
            # settings extend
            kept = {"vae_hidden": args.vae_hidden, "vae_lr": args.vae_lr, "held_out_steps": args.held_out_steps,
                    **json.loads((out / "settings.json").read_text())}
        except (OSError, ValueError):
            raise SystemExit(f"deep_gp_mnist: {out} exists and is not a run of this script (no settings.json): "
                             "name a new folder") from None
        if kept != settings:
            raise SystemExit(f"deep_gp_mnist: {out} was run with {kept}, not {settings}: name a new folder")
    else:
        out.mkdir(parents=True)
        (out / "settings.json").write_text(json.dumps(settings))
    rng = np.random.default_rng(args.seed)
    if args.picture:
        from gvae.plots import canvas
        try:
            canvas.require()  # before the training, not after it
        except RuntimeError as exc:
            raise SystemExit(f"deep_gp_mnist: --picture: {exc}") from None
    train = load_mnist()["train"]
    Y, labels = train[0][:args.images].astype(np.float64), np.asarray(train[1][:args.images])
    held_out = train[0][args.images:2 * args.images].astype(np.float64) - Y.mean(0)
    Y = Y - Y.mean(0)
    hidden = principal_components(Y, args.hidden)
    top = principal_components(hidden, args.latent)
    n = len(Y)
    flat = principal_components(Y, args.latent)
    gplvm = {"mu_x": flat, "log_S_x": np.full((n, args.latent), np.log(0.1)), "layer": layer(rng, flat, args.inducing)}
    deep = {"mu_x": top, "log_S_x": np.full((n, args.latent), np.log(0.1)), "mu_h": hidden,
            "log_S_h": np.full((n, args.hidden), np.log(0.1)),
            "top": layer(rng, top, args.inducing), "out": layer(rng, hidden, args.inducing)}
    vae = Vae(Y.shape[1], args.latent, args.vae_hidden)
    vae_params = vae.new_params(np.random.default_rng([args.seed, 1]))
    results = dict(settings, steps=args.steps, vae_steps=args.vae_steps, pixel_variance=float(np.mean(Y ** 2)))
    for label, name, objective, params in (("GP-LVM", "gplvm", gplvm_objective, gplvm),
                                           ("deep GP", "deep", deep_objective, deep),
                                           ("VAE", "vae", vae.objective, vae_params)):
        if name == "vae":
            seconds = adam(objective, params, Y, args.vae_steps, args.vae_lr, label, out / "vae.npz",
                           vae.noise(args.seed, n))
            bound, rebuilt, steps = vae.bound(params, Y, args.seed), vae.rebuilt(params, Y), args.vae_steps
        else:
            seconds = adam(objective, params, Y, args.steps, args.lr, label, out / f"{name}.npz")
            bound, steps = -float(objective(params, Y)) / n, args.steps
            # the images rebuilt from their latent posteriors (the deep GP's from q(H), its last layer's inputs)
            inputs = ("mu_x", "log_S_x", "layer") if name == "gplvm" else ("mu_h", "log_S_h", "out")
            rebuilt = reconstruction(params[inputs[0]], np.exp(params[inputs[1]]), Y, params[inputs[2]])
        mse = float(np.mean((rebuilt - Y) ** 2))
        results[label] = {"bound_per_image": bound, "reconstruction_mse_per_pixel": mse, "seconds": seconds}
        if name != "vae" and len(held_out):
            estimate, fit_seconds = held_out_fit(objective, params, Y, held_out, args.held_out_steps, args.lr,
                                                 f"{label}, held-out images", out / f"{name}_held_out_{steps}.npz")
            results[label].update(held_out_images=len(held_out), held_out_log_density_per_image=estimate,
                                  held_out_seconds=fit_seconds)
            print(f"{label}: on {len(held_out)} held-out images, F(Y, Y*) - F(Y) per image {estimate:.2f} nats "
                  f"({fit_seconds:.0f} s)", flush=True)
        print(f"{label}: bound per image {bound:.2f} nats after {steps} steps ({seconds:.0f} s); "
              f"reconstruction MSE per pixel {mse:.5f} (the images' variance per pixel {float(np.mean(Y ** 2)):.5f})",
              flush=True)
    if len(held_out):
        results["VAE"]["held_out_images"] = len(held_out)
        results["VAE"]["held_out_bound_per_image"] = vae.bound(vae_params, held_out, args.seed)
        results["VAE"]["held_out_reconstruction_mse_per_pixel"] = float(
            np.mean((vae.rebuilt(vae_params, held_out) - held_out) ** 2))
        print(f"VAE: on {len(held_out)} held-out images, bound per image "
              f"{results['VAE']['held_out_bound_per_image']:.2f} nats, reconstruction MSE per pixel "
              f"{results['VAE']['held_out_reconstruction_mse_per_pixel']:.5f}", flush=True)
    if args.picture:
        latent_picture(args.picture, {
            "Bayesian GP-LVM": (gplvm["mu_x"], np.exp(gplvm["layer"]["log_ls"]), "lengthscale"),
            "deep GP (top layer)": (deep["mu_x"], np.exp(deep["top"]["log_ls"]), "lengthscale"),
            "VAE (posterior means)": (vae.means(vae_params, Y), vae.kl_per_unit(vae_params, Y), "KL")}, labels)
    tmp = out / "results.tmp.json"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out / "results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
