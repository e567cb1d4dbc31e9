"""One finite-difference check for every VJP: <u, J v> against a central directional difference."""
import numpy as np

from gvae.autodiff import value_and_grad


def _tree_map(f, *trees):
    if isinstance(trees[0], dict):
        return {k: _tree_map(f, *(t[k] for t in trees)) for k in trees[0]}
    return f(*trees)


def _tree_dot(a, b):
    if isinstance(a, dict):
        return sum(_tree_dot(a[k], b[k]) for k in a)
    return float(np.sum(a * b))


def check_vjp(fun, args, argnum=0, seed=0, eps=1e-5, rtol=1e-5, atol=1e-8):
    """Check d/dt <u, fun(args[argnum] + t v)> at t=0 against <grad of <u, fun>, v>, in float64, and
    that the gradient written into ``out=`` buffers is the same.

    ``fun`` maps the (possibly dict-valued) arguments to an array; u and v are random. The inputs are
    also checked not to be mutated by the forward or backward pass.

    The step ``eps`` balances the differences' truncation error (O(eps^4) after extrapolation) against
    the noise of the function values over eps: the activation kernels' vectorised exp and log1p are
    accurate to about 1e-13 relative in float64 (not 1e-16), which a step of 1e-6 would amplify to about
    1e-5."""
    rng = np.random.default_rng(seed)
    args = list(args)
    before = [_tree_map(np.copy, a) if isinstance(a, (dict, np.ndarray)) else a for a in args]
    out = np.asarray(fun(*args))
    u = rng.standard_normal(out.shape)

    def scalar(*a):
        from gvae import ops
        return ops.sum(fun(*a) * u)

    _, g = value_and_grad(scalar, argnum)(*args)
    # The same gradient written into caller-owned buffers (as training does), every entry overwritten.
    out = _tree_map(lambda x: np.full(np.shape(x), np.nan), args[argnum])
    _, written = value_and_grad(scalar, argnum, out=out)(*args)
    assert written is out
    _tree_map(lambda a, b: np.testing.assert_array_equal(a, b, "gradient written into out="), out, g)
    v = _tree_map(lambda x: rng.standard_normal(np.shape(x)), args[argnum])

    def at(t):
        shifted = list(args)
        shifted[argnum] = _tree_map(lambda x, d: x + t * d, args[argnum], v)
        return float(np.sum(np.asarray(fun(*shifted)) * u))

    # Central differences at eps and eps / 2, combined by Richardson extrapolation: the O(eps^2) terms
    # cancel, leaving O(eps^4). A single difference at eps = 1e-5 was off by 2e-4 relative where the
    # function curves sharply (an IWAE bound, seed 492 of test_hierarchical_iwae_bound_gradient: the
    # difference moved from 311 to 796 to 810.49 to 810.635 as eps went from 1e-3 to 1e-6, the gradient
    # 810.636), so it failed a right gradient.
    #
    # No one step suits every function: where the values carry noise (a factor with a small diagonal, seed
    # 2232434 of test_gradients_through_sample_log_q_and_kl[full]: the extrapolated difference went from
    # 1.3224010 to 1.3223985 to 1.3224189 as eps went from 1e-3 to 1e-4 to 1e-5, the gradient 1.3224008),
    # a larger step is the accurate one. So the steps eps, 10 eps and 100 eps are tried in turn: the
    # difference's error is large at too small a step (noise) and at too large a one (truncation), and a
    # wrong gradient matches the difference at none of them.
    #
    # A piecewise function (ReLU) needs the step the other way: within a step of a kink the difference
    # straddles it (seed 1963 of test_elbo_gradient_whole_model, relu: a kink between 1e-6 and 1e-5 away,
    # the differences -4.92835, -4.92254, -4.92200 at eps, 10 eps, 100 eps, and -4.9273466 at 1e-6 and
    # 1e-7, the gradient -4.9273466). So eps / 10 is tried last.
    def central(h):
        return (at(h) - at(-h)) / (2 * h)
    analytic = _tree_dot(g, v)
    steps, numerics = (eps, 10 * eps, 100 * eps, eps / 10), []
    for step in steps:
        numerics.append((4 * central(step / 2) - central(step)) / 3)
        if np.isclose(analytic, numerics[-1], rtol=rtol, atol=atol):
            break
    else:
        raise AssertionError(f"gradient {analytic!r} against the differences {numerics} at steps "
                             + ", ".join(f"{step:g}" for step in steps))
    for a, b in zip(args, before):
        if isinstance(a, (dict, np.ndarray)):
            _tree_map(lambda x, y: np.testing.assert_array_equal(x, y, "input mutated"), a, b)
