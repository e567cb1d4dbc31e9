"""Named parameter arrays stored as views into one flat buffer, so the optimiser makes one pass and the
gradients can be written into views of a second buffer of the same layout."""
import math

import numpy as np

from .. import ops
from ..kernels import to_device
from .layers import INITS
from .likelihoods import get_likelihood


class FlatParams:
    """``views[name]`` are arrays of the given shapes sharing the flat buffer ``flat`` (dtype ``dtype``):
    zeros on the host, or the given ``flat`` (an array of the layout's size and dtype on any device)."""

    def __init__(self, shapes, dtype=np.float32, flat=None):
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        self.dtype = np.dtype(dtype)
        sizes = [math.prod(s) for s in self.shapes.values()]
        if flat is None:
            flat = np.zeros(sum(sizes), dtype=self.dtype)
        elif flat.shape != (sum(sizes),) or flat.dtype != self.dtype:
            raise ValueError(f"FlatParams: the flat buffer must have shape ({sum(sizes)},) and dtype "
                             f"{self.dtype}, got {flat.shape} and {flat.dtype}")
        self.flat = flat
        self.slices = {}
        start = 0
        for name, size in zip(self.shapes, sizes):
            self.slices[name] = slice(start, start + size)
            start += size
        self.views = self.unflatten(self.flat)

    @property
    def size(self):
        return self.flat.size

    def unflatten(self, flat):
        """A dict of views of ``flat`` (any buffer of this layout) under the parameter names."""
        return {name: flat[sl].reshape(self.shapes[name]) for name, sl in self.slices.items()}

    def on(self, device):
        """This layout over a copy of the buffer on ``device`` (itself when the buffer is there)."""
        flat = to_device(self.flat, device)
        return self if flat is self.flat else FlatParams(self.shapes, self.dtype, flat)


def network_shapes(model):
    """{name: shape} of a model made of ``model.networks()`` and ``model.likelihood``: the networks' in order,
    then the likelihood's own."""
    shapes = {}
    for net in model.networks():
        shapes.update(net.shapes())
    return {**shapes, **model.likelihood.param_shapes()}


def network_params(model, rng, x=None, decoder=None):
    """Fresh :class:`FlatParams` of ``model.param_shapes()`` on the host: every network of
    ``model.networks()`` initialised by ``model.init`` from the NumPy generator ``rng``, then the
    likelihood's parameters; with the training data ``x`` and the "uniform" scheme, the last bias of the
    network ``decoder`` (the one that gives the likelihood's parameters) where the likelihood predicts the
    data's marginal (``Likelihood.output_bias``)."""
    params = FlatParams(model.param_shapes(), model.dtype)
    for net in model.networks():
        net.init(rng, params.views, model.init)
    model.likelihood.init(rng, params.views)
    bias = None if x is None or model.init != "uniform" else model.likelihood.output_bias(x)
    if bias is not None:
        params.views[f"{decoder.prefix}b{len(decoder.activations) - 1}"][...] = bias
    return params


class NetworkModel:
    """What a one-layer model made of networks, ``decoder`` among them, and a likelihood keeps: ``n_in``
    observed units, ``size`` latent units, ``hidden`` widths, ``activation``, ``likelihood`` (built from its
    name and ``likelihood_options``), ``dtype`` and the initialisation ``init``; its parameters are its
    networks' and the likelihood's (:func:`network_shapes`, :func:`network_params`)."""

    def __init__(self, n_in, latent, hidden, activation, likelihood, dtype, likelihood_options, init):
        if min(int(n_in), int(latent)) < 1:
            raise ValueError(f"latent and input sizes must be positive, got {latent} and {n_in}")
        if init not in INITS:
            raise ValueError(f"unknown initialisation {init!r}; expected one of {sorted(INITS)}")
        self.n_in, self.size, self.init = int(n_in), int(latent), init
        self.hidden = tuple(int(h) for h in hidden)
        self.activation, self.dtype = activation, np.dtype(dtype)
        self.likelihood = get_likelihood(likelihood, self.n_in, **(likelihood_options or {}))

    def param_shapes(self):
        return network_shapes(self)

    def new_params(self, rng, x=None):
        """Freshly initialised parameters on the host from the NumPy generator ``rng`` (:func:`network_params`:
        with the training data ``x``, the decoder's last bias at the data's marginal)."""
        return network_params(self, rng, x, self.decoder)

    def likelihood_params(self, params, codes):
        """The likelihood's parameters for a draw's codes (a list, bottom first): the decoder's output at the
        bottom one (what ``gvae sample`` decodes after the model's ``prior_sample``)."""
        return self.decoder(params, codes[0])


def layered_prior_text(kind, sizes):
    """What a prior draw of layers of ``sizes`` (bottom first) of ``kind`` units ("binary") is, in words (a
    picture's title): "binary draws z, d = 16" for one layer, "ancestral binary draws z2 ... z1, d = 6-4"."""
    if len(sizes) == 1:
        return f"{kind} draws z, d = {sizes[0]}"
    return f"ancestral {kind} draws z{len(sizes)} ... z1, d = " + "-".join(map(str, sizes))


def top_down(sizes, u, draw):
    """The codes of layers of ``sizes`` (bottom first) drawn from the top down with the noise u (..., sum(sizes)),
    each layer's slice in order: ``draw(layer, above, u_layer)`` -> the layer's codes, ``above`` the codes of
    the layer above (None for the top one). Returns the codes, bottom first (a prior draw of a layered model)."""
    bounds = np.cumsum((0, *sizes))
    codes, above = [None] * len(sizes), None
    for layer in range(len(sizes) - 1, -1, -1):
        above = codes[layer] = draw(layer, above, u[..., bounds[layer]:bounds[layer + 1]])
    return codes


class LayeredModel:
    """What a model of stochastic layers bottom first over ``n_in`` observed units keeps (the deep exponential
    families'): ``sizes``, the encoder's ``hidden`` widths and ``activation``, ``dtype`` and the
    initialisation ``init``, checked (ValueError naming ``what`` the model is)."""

    def __init__(self, what, n_in, latent, hidden, activation, dtype, init):
        sizes = (latent,) if np.isscalar(latent) else tuple(latent)
        if min(int(n_in), *map(int, sizes)) < 1:
            raise ValueError(f"{what} needs positive input and layer sizes, got {n_in} and {sizes}")
        if init not in INITS:
            raise ValueError(f"unknown initialisation {init!r}; expected one of {sorted(INITS)}")
        self.n_in, self.sizes = int(n_in), tuple(int(k) for k in sizes)
        self.hidden, self.activation, self.init = tuple(int(h) for h in hidden), activation, init
        self.dtype = np.dtype(dtype)
        self.noise_size = sum(self.sizes)

    @staticmethod
    def affine(z, w, bias):
        """The next layer's parameters from samples z (..., k) (a pass's (S, B, k), a prior draw's (N, k)):
        z W + bias for W (k, n), (..., n), by one two-dimensional product over the rows."""
        *lead, k = z.shape
        return ops.reshape(ops.matmul(ops.reshape(z, (-1, k)), w), (*lead, w.shape[-1])) + bias
