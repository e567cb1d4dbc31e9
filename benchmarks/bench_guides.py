"""gvae's AutoBandedNormal against NumPyro's and Pyro's autoguides on the stochastic-volatility model of
examples/stochastic_volatility_guides.py (the T-step log-volatility path and three globals).

At T = 2,000 every guide is fitted by SVI (Adam, its step size decaying 10-fold over its steps): NumPyro's
AutoBandedNormal (a chain over the path), AutoMultivariateNormal, AutoLowRankMultivariateNormal (rank 10 and
50) and AutoDiagonalNormal, jitted; Pyro's AutoBandedNormal and AutoGaussian (dense back end: one site for the
path), eager. The dense guides cost O(T^3) a step, so their step counts are flags of their own (--dense-steps
for AutoMultivariateNormal, --autogaussian-steps) and their step size (--dense-lr); the table shows each fit's
steps, the final ELBO (the mean of --elbo-repeats estimates of --elbo-particles particles each), milliseconds
a step (the median after the warm-up), and the error of the path's posterior means and standard deviations
(from 2,000 draws of the guide) against a long NUTS run (RMSE and the largest, over the T steps). The NUTS run
is cached in --nuts-cache (outside the repository), so it runs once per T, seed and --nuts-samples. Then the
T-scaling rows: ms a step of the banded and diagonal guides (and of the dense one up to --dense-max-T) at each
of --scaling-T.

    python benchmarks/bench_guides.py --threads 1                # the full run (NUTS first: long)
    python benchmarks/bench_guides.py --quick                    # a rehearsal at small sizes
"""
import os
import sys
from pathlib import Path

import numpy as np

from gvae.io.arguments import ArgumentParser

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))  # the models fitted here
from guide_fitting import fit, set_threads  # noqa: E402
from stochastic_volatility_guides import BANDED, model_of, simulate  # noqa: E402

# The dense guides last: their fits take the longest.
TABLE = [("numpyro", "banded"), ("numpyro", "lowrank10"), ("numpyro", "lowrank50"), ("numpyro", "diagonal"),
         ("pyro", "banded"), ("numpyro", "mvn"), ("pyro", "autogaussian")]
DRAWS = 2000  # posterior draws for the path's means and standard deviations


def parse(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--T", type=int, default=2000, help="time steps of the table")
    p.add_argument("--steps", type=int, default=20000, help="SVI steps of each fit in the table but the dense ones")
    p.add_argument("--dense-steps", type=int, default=5000, help="SVI steps of NumPyro's AutoMultivariateNormal")
    p.add_argument("--autogaussian-steps", type=int, default=500, help="SVI steps of Pyro's AutoGaussian")
    p.add_argument("--lr", type=float, default=0.01, help="Adam's first step size")
    p.add_argument("--dense-lr", type=float, default=0.001,
                   help="Adam's first step size for the dense guides (AutoMultivariateNormal diverged at 0.01)")
    p.add_argument("--elbo-particles", type=int, default=1000, help="particles of each final ELBO estimate")
    p.add_argument("--elbo-repeats", type=int, default=5, help="final ELBO estimates averaged")
    p.add_argument("--nuts-samples", type=int, default=2000, help="NUTS draws after as many warm-up steps")
    p.add_argument("--nuts-cache", type=Path, default=Path.home() / ".cache" / "gvae" / "bench_guides",
                   help="folder of the cached NUTS runs (outside the repository)")
    p.add_argument("--guides", nargs="+", default=[f"{library}:{name}" for library, name in TABLE],
                   choices=[f"{library}:{name}" for library, name in TABLE], metavar="LIBRARY:GUIDE",
                   help="the table's fits, as library:guide (default: all, in this order)")
    p.add_argument("--scaling-T", type=int, nargs="*", default=[1000, 2000, 5000, 10000],
                   help="the path lengths of the scaling rows (none: no scaling rows)")
    p.add_argument("--scaling-steps", type=int, default=200, help="timed SVI steps a row of the scaling")
    p.add_argument("--dense-max-T", type=int, default=2000, help="the largest T the dense guide is timed at")
    p.add_argument("--threads", type=int, default=1, help="threads of gvae's kernels, XLA and PyTorch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a rehearsal: T = 200, 100 steps, 100 NUTS draws, "
                   "scaling at 200 and 400, few particles")
    args = p.parse_args(argv)
    if args.quick:
        args.T, args.steps, args.elbo_particles, args.elbo_repeats, args.nuts_samples = 200, 100, 10, 2, 100
        args.dense_steps, args.autogaussian_steps = 100, 20
        args.scaling_T, args.scaling_steps, args.dense_max_T = [200, 400], 20, 400
    return args


def nuts_reference(y, args):
    """(posterior means (T,), standard deviations (T,)) of the path by NumPyro's NUTS, cached."""
    path = args.nuts_cache / f"sv_T{len(y)}_seed{args.seed}_n{args.nuts_samples}.npz"
    if path.exists():
        ref = np.load(path)
        return ref["mean"], ref["sd"]
    import jax
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(model_of("numpyro")), num_warmup=args.nuts_samples, num_samples=args.nuts_samples,
                progress_bar=False)
    mcmc.run(jax.random.PRNGKey(args.seed), y)
    h = np.asarray(mcmc.get_samples()["h"])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mean=h.mean(0), sd=h.std(0))
    print(f"NUTS: {args.nuts_samples} draws cached in {path}", flush=True)
    return h.mean(0), h.std(0)


def path_draws(library, guide, params, y, seed):
    """DRAWS posterior draws of the path h from a fitted guide: (DRAWS, T)."""
    if library == "numpyro":
        import jax
        return np.asarray(guide.sample_posterior(jax.random.PRNGKey(seed), params, sample_shape=(DRAWS,))["h"])
    import torch
    # One guide call a draw, keeping only the path: Pyro's Predictive kept every draw's trace, and
    # AutoGaussian's (a dense precision each) grew past 19 GB by the middle of its 2,000 draws.
    data = torch.as_tensor(y)
    with torch.no_grad():
        return np.stack([guide(data)["h"].numpy() for _ in range(DRAWS)])


def errors(draws, mean, sd):
    """(RMSE, max abs) of the draws' means and of their standard deviations against the reference's."""
    dm, ds = draws.mean(0) - mean, draws.std(0) - sd
    return np.sqrt((dm ** 2).mean()), np.abs(dm).max(), np.sqrt((ds ** 2).mean()), np.abs(ds).max()


def main(argv=None):
    args = parse(argv)
    set_threads(args.threads)
    y, _ = simulate(args.T, args.seed)
    mean, sd = nuts_reference(y, args)
    elbo = {"elbo_particles": args.elbo_particles, "elbo_repeats": args.elbo_repeats}
    print(f"stochastic volatility, T = {args.T}, {args.threads} thread(s); errors of the path's posterior against "
          f"NUTS ({args.nuts_samples} draws)")
    print(f"{'library':>8} {'guide':>13} {'steps':>6} {'ELBO':>11} {'ms/step':>9} {'mean RMSE':>10} {'mean max':>9} "
          f"{'sd RMSE':>8} {'sd max':>7}")
    steps = {"mvn": args.dense_steps, "autogaussian": args.autogaussian_steps}
    for library, name in (g.split(":") for g in args.guides):
        n = steps.get(name, args.steps)
        lr = args.dense_lr if name in steps else args.lr
        try:
            guide, params, final, ms = fit(library, name, model_of, BANDED, y, n, lr, args.seed, **elbo)
        except ValueError as exc:  # a distribution's parameters turned non-finite: the fit diverged
            print(f"{library:>8} {name:>13} {n:>6} diverged at step size {lr:g} ({str(exc).splitlines()[0]})",
                  flush=True)
            continue
        e = errors(path_draws(library, guide, params, y, args.seed), mean, sd)
        print(f"{library:>8} {name:>13} {n:>6} {final:11.2f} {ms:9.3f} {e[0]:10.4f} {e[1]:9.4f} {e[2]:8.4f} "
              f"{e[3]:7.4f}", flush=True)
    if not args.scaling_T:
        return
    print(f"\nms per SVI step against T (NumPyro, jitted; median of {args.scaling_steps} steps after the warm-up)")
    print(f"{'T':>6} {'banded':>9} {'diagonal':>9} {'mvn':>9}")
    for T in args.scaling_T:
        yT, _ = simulate(T, args.seed)
        names = ("banded", "diagonal", "mvn") if T <= args.dense_max_T else ("banded", "diagonal")
        ms = [fit("numpyro", name, model_of, BANDED, yT, args.scaling_steps, args.lr, args.seed, elbo_particles=0)[3]
              for name in names]
        print(f"{T:>6} " + " ".join(f"{v:9.3f}" for v in ms) + (f" {'-':>9}" if len(ms) == 2 else ""), flush=True)


if __name__ == "__main__":
    main()
