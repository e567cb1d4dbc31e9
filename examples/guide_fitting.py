"""The autoguides of NumPyro and Pyro side by side, gvae's AutoBandedNormal among them, and SVI fits that
report the final ELBO and the time a step: shared by examples/stochastic_volatility_guides.py,
examples/poisson_field_guides.py and benchmarks/bench_guide*.py."""
import os
import statistics
import time

import numpy as np

NUMPYRO_GUIDES = ("banded", "mvn", "lowrank10", "lowrank50", "diagonal")
PYRO_GUIDES = NUMPYRO_GUIDES + ("autogaussian",)
PARTICLE_CHUNK = 10  # particles a vectorised ELBO estimate of Pyro draws at once (fit_pyro)


def numpyro_guide(name, model, banded):
    """The NumPyro autoguide ``name`` (NUMPYRO_GUIDES) of ``model``; 'banded' is
    ``gvae.numpyro.AutoBandedNormal(model, **banded)``."""
    from numpyro.infer import autoguide

    from gvae.numpyro import AutoBandedNormal
    make = {"banded": lambda: AutoBandedNormal(model, **banded),
            "mvn": lambda: autoguide.AutoMultivariateNormal(model),
            "lowrank10": lambda: autoguide.AutoLowRankMultivariateNormal(model, rank=10),
            "lowrank50": lambda: autoguide.AutoLowRankMultivariateNormal(model, rank=50),
            "diagonal": lambda: autoguide.AutoDiagonalNormal(model)}
    return make[name]()


def pyro_guide(name, model, banded):
    """The Pyro autoguide ``name`` (PYRO_GUIDES) of ``model``; 'banded' is
    ``gvae.pyro.AutoBandedNormal(model, **banded)``, 'autogaussian' AutoGaussian on its dense back end (a
    model with one site for a whole path or field gives it the dependency structure of the dense guide)."""
    from pyro.infer import autoguide

    from gvae.pyro import AutoBandedNormal
    make = {"banded": lambda: AutoBandedNormal(model, **banded),
            "mvn": lambda: autoguide.AutoMultivariateNormal(model),
            "lowrank10": lambda: autoguide.AutoLowRankMultivariateNormal(model, rank=10),
            "lowrank50": lambda: autoguide.AutoLowRankMultivariateNormal(model, rank=50),
            "diagonal": lambda: autoguide.AutoDiagonalNormal(model),
            "autogaussian": lambda: autoguide.AutoGaussian(model, backend="dense")}
    return make[name]()


def set_threads(threads):
    """Threads of gvae's kernels, XLA and PyTorch: called before JAX, Numba and PyTorch are imported (their
    thread pools are sized when they start)."""
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()
    import torch

    from gvae import kernels
    torch.set_num_threads(threads)
    kernels.set_threads(threads)


def _ms_per_step(times):
    """The median of the step times after the warm-up (the first tenth, at most 10 steps), in ms."""
    return 1e3 * statistics.median(times[min(10, len(times) // 10):])


def fit_numpyro(model, guide, data, steps, lr, seed=0, elbo_particles=100, elbo_repeats=5):
    """SVI with Adam (step size lr decaying 10-fold over ``steps``), each step jitted and timed:
    (params, the final ELBO: the mean over ``elbo_repeats`` estimates of ``elbo_particles`` particles each,
    or None with no particles, the median milliseconds a step after the warm-up)."""
    import jax
    import numpyro
    from jax.example_libraries.optimizers import exponential_decay
    from numpyro.infer import SVI, Trace_ELBO

    svi = SVI(model, guide, numpyro.optim.Adam(exponential_decay(lr, steps, 0.1)), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(seed), data)
    update = jax.jit(svi.update)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, loss = update(state, data)
        loss.block_until_ready()
        times.append(time.perf_counter() - t)
    params = svi.get_params(state)
    if not elbo_particles:
        return params, None, _ms_per_step(times)
    elbo = Trace_ELBO(num_particles=elbo_particles)
    loss_at = jax.jit(lambda key: elbo.loss(key, params, model, guide, data))
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), elbo_repeats)
    final = -float(np.mean([loss_at(k) for k in keys]))
    return params, final, _ms_per_step(times)


def fit_pyro(model, guide, data, steps, lr, seed=0, elbo_particles=100, elbo_repeats=5):
    """SVI with Adam (step size lr decaying 10-fold over ``steps``), eager, each step timed: (guide, the
    final ELBO as :func:`fit_numpyro`'s, the median milliseconds a step after the first)."""
    import pyro
    import torch
    from pyro.infer import SVI, Trace_ELBO

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    data = torch.as_tensor(data)
    svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / steps)}), Trace_ELBO())
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        svi.step(data)
        times.append(time.perf_counter() - t)
    if not elbo_particles:
        return guide, None, _ms_per_step(times)
    # The particles in vectorised chunks: a dense guide's draws (AutoGaussian at T = 2,000) took 24 GB all
    # 1,000 at once and 21.5 GB 100 at once, and the process was killed both times. The estimate is the
    # same mean over elbo_particles draws.
    chunks = [PARTICLE_CHUNK] * (elbo_particles // PARTICLE_CHUNK) + [elbo_particles % PARTICLE_CHUNK]
    elbos = [(n, Trace_ELBO(num_particles=n, vectorize_particles=True)) for n in chunks if n]
    with torch.no_grad():
        final = -float(np.mean([sum(n * e.loss(model, guide, data) for n, e in elbos) / elbo_particles
                                for _ in range(elbo_repeats)]))
    return guide, final, _ms_per_step(times)


def fit(library, name, model_of, banded, data, steps, lr, seed=0, **elbo):
    """Fit the guide ``name`` of ``library`` ('numpyro' or 'pyro') to ``model_of(library)``: (the guide,
    its params (NumPyro) or None (Pyro: the guide holds them), final ELBO, ms a step) as
    :func:`fit_numpyro` and :func:`fit_pyro` (``elbo``: their elbo_particles and elbo_repeats)."""
    model = model_of(library)
    if library == "numpyro":
        guide = numpyro_guide(name, model, banded)
        params, final, ms = fit_numpyro(model, guide, data, steps, lr, seed, **elbo)
        return guide, params, final, ms
    guide = pyro_guide(name, model, banded)
    _, final, ms = fit_pyro(model, guide, data, steps, lr, seed, **elbo)
    return guide, None, final, ms


def primitives(library):
    """(the library's module, for sample and factor; its distributions; its array namespace), for a model
    written once for both: NumPyro with jax.numpy, Pyro with torch."""
    if library == "numpyro":
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist
        return numpyro, dist, jnp
    import pyro
    import pyro.distributions as dist
    import torch
    return pyro, dist, torch


def _count(least):
    """An argparse type: an int >= ``least`` (a bad value is one line of the parser's error)."""
    import argparse

    def integer(text):
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"{text} is not >= {least}")
        return value
    return integer


def add_flags(parser, steps):
    """The examples' common flags (library, SVI steps and step size, guides, final ELBO's particles, threads,
    seed) added to ``parser``."""
    parser.add_argument("--library", choices=("numpyro", "pyro"), default="numpyro")
    parser.add_argument("--steps", type=_count(1), default=steps, help="SVI steps")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's first step size")
    parser.add_argument("--guides", nargs="+", default=None, help=f"of {PYRO_GUIDES} (NumPyro: all but autogaussian)")
    parser.add_argument("--elbo-particles", type=_count(0), default=100,
                        help="particles of each of the 5 final ELBO estimates (0: no final ELBO, the steps timed only)")
    parser.add_argument("--threads", type=_count(1), default=None,
                        help="threads of gvae's kernels, XLA and PyTorch (default: each library's own)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def report(args, model_of, banded, data):
    """Fit each of ``args.guides`` (default: all of the library's) and print its final ELBO and ms a step."""
    if args.threads is not None:
        set_threads(args.threads)
    names = args.guides or (NUMPYRO_GUIDES if args.library == "numpyro" else PYRO_GUIDES)
    for name in names:
        _, _, elbo, ms = fit(args.library, name, model_of, banded, data, args.steps, args.lr, args.seed,
                             elbo_particles=args.elbo_particles)
        shown = "-" if elbo is None else f"{elbo:.2f}"
        print(f"{name:>14}: ELBO {shown:>12}   {ms:9.2f} ms/step", flush=True)
