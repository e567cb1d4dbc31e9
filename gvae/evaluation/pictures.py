"""The numbers the pictures of a run show (:mod:`gvae.plots` draws them): decoder means of reconstructions,
of prior draws and over the 2-d latent manifold, and the Cholesky factor's diagonals and the correlation
matrices of a few posteriors. Each is computed on the device of the parameters and read to the host once,
as NumPy arrays: decoder means float64 (N, n) in the likelihood's mean space, images x (N, n) given on the
host in any float dtype (cast to the model's)."""
import numpy as np

from ..kernels import device_of, to_device, to_host
from ..training.runs import prior_draws


def _on_device(model, params, a):
    """The host array ``a`` (images or latent points) in the model's dtype, on the device of ``params``
    (name -> array)."""
    return to_device(np.ascontiguousarray(a, dtype=model.dtype), device_of(*params.values()))


def decoder_means(model, params, zs):
    """The likelihood's mean of x for the codes zs (a list bottom first of (N, d_l) on the device of
    ``params``; a VAE's decoder reads the bottom one), as float64 (N, n) on the host."""
    return to_host(model.likelihood.mean(model.likelihood_params(params, zs), params)).astype(np.float64)


def reconstructions(model, params, x):
    """The decoder means at the posterior means of the images x (N, n), every layer's from the mean pass
    (:meth:`VAE.infer` without noise): float64 (N, n)."""
    return decoder_means(model, params, model.infer(params, _on_device(model, params, x))[1])


def prior_means(model, params, n, seed):
    """The decoder means of n draws z ~ N(0, I) from ``seed`` (a hierarchy: ancestral draws from the top
    layer down), the z of ``gvae sample --seed`` (:func:`gvae.training.runs.prior_draws`): float64 (n, n_in)."""
    out, _ = prior_draws(model, params, n, seed, device_of(*params.values()))
    return to_host(model.likelihood.mean(out, params)).astype(np.float64)


def manifold_grid(n):
    """The n x n latent points of the manifold picture: the midpoints (k + 1/2) / n of a regular grid
    on the unit square mapped through the inverse Gaussian CDF. Returns (z (n * n, 2), values (n,))
    with z row by row: z_1 rises left to right, z_2 falls top to bottom (so up is larger z_2)."""
    from scipy.special import ndtri
    values = ndtri((np.arange(n) + 0.5) / n)
    z1, z2 = np.meshgrid(values, values[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1), values


def manifold_means(model, params, n):
    """The decoder means at the n x n points of :func:`manifold_grid` of a model with one 2-d stochastic
    layer: (means float64 (n * n, n_in), values (n,)). A ValueError for any other model."""
    if model.sizes != (2,):
        raise ValueError(f"the manifold picture needs one 2-d stochastic layer, this model has "
                         f"{'-'.join(map(str, model.sizes))}")
    z, values = manifold_grid(n)
    return decoder_means(model, params, [_on_device(model, params, z)]), values


def factor_diagonals(model, params, x, most):
    """The first ``most`` diagonals of the Cholesky factor of the bottom layer's posterior precision for
    each image of x (B, n), as the family gives them (:meth:`gvae.model.posteriors.Family.factor_diagonals`):
    (offsets, values float64 (B, K, d), free bool (K, d))."""
    return model.layers[0].family.factor_diagonals(model.encode(params, _on_device(model, params, x)), most)


def correlations(model, params, x):
    """The bottom layer's posterior correlation matrices corr(z_i, z_j | x) for each image of x (B, n), as
    the family gives them (:meth:`gvae.model.posteriors.Family.correlation`): float64 (B, d, d)."""
    return model.layers[0].family.correlation(model.encode(params, _on_device(model, params, x)))
