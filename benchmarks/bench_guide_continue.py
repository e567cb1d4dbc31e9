"""Whether the banded guides' fits of bench_guides.py have converged: Pyro's AutoBandedNormal fitted as there,
its parameters handed to NumPyro's AutoBandedNormal (the same layout: loc, the factor's diagonal and its
off-diagonals), NumPyro's ELBO at that point (which must agree with Pyro's: one objective), and NumPyro's SVI
continued from there for --more-steps at each step size of --lr (Adam, decaying 10-fold). Each row: the ELBO
(the mean of 5 estimates of 1,000 particles), the path's posterior standard deviations against NUTS's
(bench_guides.py's cached run) and the globals' posterior means. With --dense-steps, the last of these fits
is handed on to NumPyro's AutoMultivariateNormal (its mean, and the Cholesky factor of its covariance: the
same Gaussian) and fitted --dense-steps more from --dense-lr: how far the dense guide's ELBO climbs above the
banded one's from there.

    python benchmarks/bench_guide_continue.py --threads 1              # T = 2,000, 20,000 + 20,000 steps
    python benchmarks/bench_guide_continue.py --quick                  # a rehearsal at small sizes
"""
import os

import numpy as np

from gvae.io.arguments import ArgumentParser

import bench_guides  # the NUTS reference, the draws' errors; it puts examples/ on the path
from guide_fitting import fit, set_threads  # noqa: E402
from stochastic_volatility_guides import BANDED, model_of, simulate  # noqa: E402


def parse(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--T", type=int, default=2000, help="time steps")
    parser.add_argument("--steps", type=int, default=20000, help="Pyro's SVI steps (from 0.01, as bench_guides.py)")
    parser.add_argument("--more-steps", type=int, default=20000, help="NumPyro's SVI steps from Pyro's fit")
    parser.add_argument("--lr", type=float, nargs="+", default=[0.001, 0.01], help="NumPyro's first step sizes")
    parser.add_argument("--nuts-samples", type=int, default=2000, help="NUTS draws (bench_guides.py's cache)")
    parser.add_argument("--nuts-cache", type=os.path.expanduser, default="~/.cache/gvae/bench_guides")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dense-steps", type=int, default=0, help="AutoMultivariateNormal's steps from the last fit")
    parser.add_argument("--dense-lr", type=float, default=1e-4, help="its first step size (decaying 10-fold)")
    parser.add_argument("--quick", action="store_true", help="a rehearsal: T = 200, 200 + 200 steps, 100 NUTS draws")
    args = parser.parse_args(argv)
    if args.quick:
        args.T, args.steps, args.more_steps, args.nuts_samples = 200, 200, 200, 100
    return args


def final_elbo(model, guide, params, y, keys):
    """The mean of NumPyro's ELBO estimates of 1,000 particles, one per key."""
    from numpyro.infer import Trace_ELBO

    elbo = Trace_ELBO(num_particles=1000)
    return -float(np.mean([elbo.loss(k, params, model, guide, y) for k in keys]))


def main(argv=None):
    args = parse(argv)
    set_threads(args.threads)
    import jax
    import jax.numpy as jnp
    import numpyro
    from jax.example_libraries.optimizers import exponential_decay
    from numpyro.infer import SVI, Trace_ELBO

    from gvae.numpyro import AutoBandedNormal
    y, _ = simulate(args.T, args.seed)
    reference = bench_guides.parse(["--T", str(args.T), "--nuts-samples", str(args.nuts_samples), "--nuts-cache",
                                    args.nuts_cache, "--seed", str(args.seed)])
    mean, sd = bench_guides.nuts_reference(y, reference)
    pyro_guide, _, pyro_elbo, _ = fit("pyro", "banded", model_of, BANDED, y, args.steps, 0.01, args.seed)
    handed = {f"auto_{name}": jnp.asarray(getattr(pyro_guide, name).detach().numpy())
              for name in ("loc", "factor_diag", "factor_off")}
    model = model_of("numpyro")
    guide = AutoBandedNormal(model, **BANDED)
    keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), 5)
    print(f"stochastic volatility, T = {args.T}; Pyro's banded fit after {args.steps} steps: its ELBO {pyro_elbo:.2f}")
    print(f"{'NumPyro from there':>36} {'ELBO':>9} {'sd mean':>8} {'NUTS sd':>8} {'sd RMSE':>8} {'mu':>7} {'phi':>6} "
          f"{'sigma':>6}")

    def row(label, params):
        value = final_elbo(model, guide, params, y, keys)
        draws = guide.sample_posterior(jax.random.PRNGKey(args.seed), params, sample_shape=(bench_guides.DRAWS,))
        h = np.asarray(draws["h"])
        errors = bench_guides.errors(h, mean, sd)
        phi = 2 * float(np.mean(draws["phi01"])) - 1
        print(f"{label:>36} {value:9.2f} {h.std(0).mean():8.3f} {sd.mean():8.3f} {errors[2]:8.3f} "
              f"{float(np.mean(draws['mu'])):7.3f} {phi:6.3f} {float(np.mean(draws['sigma'])):6.3f}", flush=True)

    svi = SVI(model, guide, numpyro.optim.Adam(0.0), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.PRNGKey(args.seed), y, init_params=handed))
    row("the handed-over point", params)
    for lr in args.lr:
        svi = SVI(model, guide, numpyro.optim.Adam(exponential_decay(lr, args.more_steps, 0.1)), Trace_ELBO())
        params = svi.run(jax.random.PRNGKey(args.seed), args.more_steps, y, progress_bar=False,
                         init_params=handed).params
        row(f"+{args.more_steps} steps from {lr:g}", params)
    if args.dense_steps:
        dense(args, model, guide, params, y, keys)


def dense(args, model, banded, params, y, keys):
    """The banded fit ``params`` as NumPyro's AutoMultivariateNormal, its ELBO there and after
    ``args.dense_steps`` more steps."""
    import jax
    import jax.numpy as jnp
    import numpyro
    from jax.example_libraries.optimizers import exponential_decay
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal

    posterior = banded.get_posterior(params)
    covariance = np.asarray(posterior.covariance_matrix, dtype=np.float64)
    start = {"auto_loc": posterior.mean, "auto_scale_tril": jnp.asarray(np.linalg.cholesky(covariance), jnp.float32)}
    guide = AutoMultivariateNormal(model)
    svi = SVI(model, guide, numpyro.optim.Adam(exponential_decay(args.dense_lr, args.dense_steps, 0.1)), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(args.seed), y, init_params=start)
    at_start = final_elbo(model, guide, svi.get_params(state), y, keys)
    print(f"AutoMultivariateNormal at the last banded fit: ELBO {at_start:.2f}", flush=True)
    result = svi.run(jax.random.PRNGKey(args.seed), args.dense_steps, y, progress_bar=False, init_params=start)
    after = final_elbo(model, guide, result.params, y, keys)
    print(f"AutoMultivariateNormal after {args.dense_steps} steps from {args.dense_lr:g}: ELBO {after:.2f}", flush=True)


if __name__ == "__main__":
    main()
