"""A Gaussian Markov random field on an R x C lattice (64 x 64 by default) seen through Poisson counts,
fitted with every autoguide of NumPyro (and of Pyro), gvae's AutoBandedNormal on the lattice's grid among
them.

The field f (R x C, row-major) has the precision Q = tau (the lattice's graph Laplacian, four neighbours)
+ kappa I, a matrix banded to C; the counts are y_ij ~ Poisson(exp(b + f_ij)). Q, tau, kappa and b are
known, so the field's R C numbers are the only latents. The site f is drawn from N(0, I) and a factor turns
that into the field's density (so that Pyro's initialisations can draw it). The posterior is not Gaussian
(the counts), but its precision is Q plus a diagonal: a grid, which AutoBandedNormal(stencil=("grid", R,
C)) holds in O(R C) a step; AutoMultivariateNormal and Pyro's AutoGaussian (one site for the field: dense)
hold (R C)^2 numbers and cost O((R C)^3) a step. Prints the final ELBO (many particles) and the
milliseconds a step of each guide.

    python examples/poisson_field_guides.py --size 64 --steps 3000
    python examples/poisson_field_guides.py --library pyro --size 32 --guides banded diagonal autogaussian
    python examples/poisson_field_guides.py --guides mvn --steps 10 --elbo-particles 0   # a step timed, no fit
"""
import numpy as np
from scipy.linalg import cholesky_banded, solve_banded

from gvae.io.arguments import ArgumentParser
from guide_fitting import add_flags, primitives, report  # examples/guide_fitting.py, beside this script

TAU, KAPPA, BIAS = 4.0, 0.1, 1.0


def precision_band(rows, cols):
    """Q in SciPy's lower band storage, (cols + 1, rows * cols): ab[k, i] = Q[i + k, i]."""
    n = rows * cols
    ab = np.zeros((cols + 1, n))
    r, c = np.divmod(np.arange(n), cols)
    degree = (c > 0).astype(float) + (c < cols - 1) + (r > 0) + (r < rows - 1)
    ab[0] = TAU * degree + KAPPA
    ab[1, :-1] = np.where(c[:-1] < cols - 1, -TAU, 0.0)  # right neighbour, not across a row's end
    ab[cols, :n - cols] = -TAU  # the neighbour below
    return ab


def log_det_precision(rows, cols):
    """log det Q, by the banded Cholesky factor."""
    return 2 * np.log(cholesky_banded(precision_band(rows, cols), lower=True)[0]).sum()


def simulate(rows, cols, seed=0):
    """(counts y (rows, cols), field f (rows, cols)) drawn from the model, float32: f = L^-T eps, Q = L L^T."""
    n = rows * cols
    low = cholesky_banded(precision_band(rows, cols), lower=True)
    up = np.zeros_like(low)  # L^T in SciPy's upper band storage: up[cols - k, j] = L^T[j - k, j] = low[k, j - k]
    for k in range(cols + 1):
        up[cols - k, k:] = low[k, :n - k]
    rng = np.random.default_rng(seed)
    f = solve_banded((0, cols), up, rng.standard_normal(n)).reshape(rows, cols)
    y = rng.poisson(np.exp(BIAS + f))
    return y.astype(np.float32), f.astype(np.float32)


def gmrf_log_density(f, log_det):
    """log N(f; 0, Q^-1) for f (*batch, R, C) in NumPy-like arrays (jax.numpy or torch): the quadratic form
    through the lattice's edges."""
    across = f[..., :, 1:] - f[..., :, :-1]
    down = f[..., 1:, :] - f[..., :-1, :]
    n = f.shape[-1] * f.shape[-2]
    quad = TAU * ((across ** 2).sum((-1, -2)) + (down ** 2).sum((-1, -2))) + KAPPA * (f ** 2).sum((-1, -2))
    return 0.5 * log_det - 0.5 * n * np.log(2 * np.pi) - 0.5 * quad


def model_of(library):
    """The model in the primitives of ``library`` ('numpyro' or 'pyro'): model(y), y (R, C) the counts."""
    ppl, dist, xp = primitives(library)

    def model(y):
        rows, cols = y.shape
        base = dist.Normal(0.0, 1.0).expand([rows, cols]).to_event(2)
        f = ppl.sample("f", base)
        ppl.factor("gmrf", gmrf_log_density(f, log_det_precision(rows, cols)) - base.log_prob(f))
        ppl.sample("y", dist.Poisson(xp.exp(BIAS + f)).to_event(2), obs=y)
    return model


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64, help="the lattice's rows and columns")
    p.add_argument("--stencil", choices=("grid", "extgrid"), default="grid", help="AutoBandedNormal's")
    args = add_flags(p, steps=3000).parse_args(argv)
    y, _ = simulate(args.size, args.size, args.seed)
    print(f"Poisson counts on a {args.size} x {args.size} GMRF, {args.library}, {args.steps} steps")
    report(args, model_of, {"stencil": (args.stencil, args.size, args.size)}, y)


if __name__ == "__main__":
    main()
