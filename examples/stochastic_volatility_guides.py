"""A stochastic-volatility model fitted with every autoguide of NumPyro (and of Pyro), gvae's
AutoBandedNormal among them.

The log-volatility h_1..h_T is an AR(1) path, h_1 ~ N(mu, sigma^2 / (1 - phi^2)),
h_t ~ N(mu + phi (h_{t-1} - mu), sigma^2), and the returns y_t ~ N(0, exp(h_t)); mu ~ N(0, 1),
(phi + 1) / 2 ~ Beta(20, 1.5), sigma ~ HalfNormal(0.5). The site h is drawn from its stationary marginals
N(mu, sigma^2 / (1 - phi^2)) and a factor turns that into the path's density (so that Pyro's
initialisations can draw it). Given the three numbers the posterior of the path is
a chain: AutoBandedNormal(model, sites=["h"]) gives h a chain precision (O(T) a step) and the three a
diagonal one; AutoMultivariateNormal's dense factor costs O(T^2) memory and O(T^3) a step. Each guide is
fitted by SVI (Adam, its step size decaying 10-fold); the report is the ELBO at the end (many particles)
and the milliseconds a step.

    python examples/stochastic_volatility_guides.py --T 1000 --steps 5000
    python examples/stochastic_volatility_guides.py --library pyro --T 1000 --guides banded autogaussian diagonal
"""
import numpy as np

from gvae.io.arguments import ArgumentParser
from guide_fitting import add_flags, primitives, report  # examples/guide_fitting.py, beside this script

TRUTH = {"mu": -1.0, "phi": 0.95, "sigma": 0.25}
BANDED = {"stencil": "chain", "sites": ["h"]}  # AutoBandedNormal's arguments: a chain over the path


def simulate(T, seed=0):
    """(returns y (T,), log-volatility h (T,)) drawn from the model at TRUTH, float32."""
    rng = np.random.default_rng(seed)
    mu, phi, sigma = TRUTH["mu"], TRUTH["phi"], TRUTH["sigma"]
    h = np.empty(T)
    h[0] = mu + sigma / np.sqrt(1 - phi ** 2) * rng.standard_normal()
    for t in range(1, T):
        h[t] = mu + phi * (h[t - 1] - mu) + sigma * rng.standard_normal()
    y = np.exp(h / 2) * rng.standard_normal(T)
    return y.astype(np.float32), h.astype(np.float32)


def ar1_log_density(xp, h, mu, phi, sigma):
    """log p(h | mu, phi, sigma) of the AR(1) path h (*batch, T), the three (*batch), in the array namespace
    ``xp`` (jax.numpy or torch)."""
    m, p, s = mu[..., None], phi[..., None], sigma[..., None]
    first = (h[..., 0] - mu) * xp.sqrt(1 - phi ** 2) / sigma
    rest = (h[..., 1:] - m - p * (h[..., :-1] - m)) / s
    T = h.shape[-1]
    return (-0.5 * (first ** 2 + (rest ** 2).sum(-1)) - T * xp.log(sigma) + 0.5 * xp.log(1 - phi ** 2)
            - 0.5 * T * np.log(2 * np.pi))


def model_of(library):
    """The model in the primitives of ``library`` ('numpyro' or 'pyro'): model(y), y (T,) the returns."""
    ppl, dist, xp = primitives(library)

    def model(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        phi = 2 * ppl.sample("phi01", dist.Beta(20.0, 1.5)) - 1
        sigma = ppl.sample("sigma", dist.HalfNormal(0.5))
        stationary = dist.Normal(mu[..., None], (sigma / xp.sqrt(1 - phi ** 2))[..., None])
        h = ppl.sample("h", stationary.expand(mu.shape + y.shape[-1:]).to_event(1))
        ppl.factor("h_prior", ar1_log_density(xp, h, mu, phi, sigma) - stationary.log_prob(h).sum(-1))
        ppl.sample("y", dist.Normal(0.0, xp.exp(h / 2)).to_event(1), obs=y)
    return model


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--T", type=int, default=1000, help="time steps (1,000 to 10,000)")
    args = add_flags(p, steps=5000).parse_args(argv)
    y, _ = simulate(args.T, args.seed)
    print(f"stochastic volatility, T = {args.T}, {args.library}, {args.steps} steps")
    report(args, model_of, BANDED, y)


if __name__ == "__main__":
    main()
