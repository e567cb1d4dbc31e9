"""Dense layers and the multilayer perceptron, over named parameters ``{prefix}W{i}``, ``{prefix}b{i}``."""
import numpy as np

from .. import ops
from ..kernels.activations import ACTIVATIONS

# Activations before which the "he" scheme uses He's gain (rectifiers), Glorot's otherwise.
_HE = {"relu", "elu", "softplus"}


def _uniform(rng, W, b, activation):
    """torch.nn.Linear's default (kaiming_uniform with a = sqrt 5): W, b ~ U(-1/sqrt(Din), 1/sqrt(Din))."""
    bound = 1 / np.sqrt(W.shape[0])
    W[...] = rng.uniform(-bound, bound, W.shape)
    b[...] = rng.uniform(-bound, bound, b.shape)


def _he(rng, W, b, activation):
    """He normal N(0, 2/Din) before a rectifier, Glorot uniform otherwise; b <- 0."""
    din, dout = W.shape
    if activation in _HE:
        W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / din)
    else:
        limit = np.sqrt(6.0 / (din + dout))
        W[...] = rng.uniform(-limit, limit, W.shape)
    b[...] = 0


def _glorot(rng, W, b, activation):
    """TensorFlow layers' default: W ~ U(+-sqrt(6 / (Din + Dout))) (Glorot uniform) before every activation;
    b <- 0."""
    limit = np.sqrt(6.0 / sum(W.shape))
    W[...] = rng.uniform(-limit, limit, W.shape)
    b[...] = 0


def _uniform_005(rng, W, b, activation):
    """W, b ~ U(-0.05, 0.05) whatever the widths (Wang et al.'s VCCA code)."""
    W[...] = rng.uniform(-0.05, 0.05, W.shape)
    b[...] = rng.uniform(-0.05, 0.05, b.shape)


# Initialisation schemes by name. "uniform" is the default: at equal training it reaches 1.9 nats more
# test ELBO than "he", gvae's former scheme, whose O(1) encoder-head outputs also start a chain or grid
# posterior with off-diagonals of L as large as its diagonal (KLs of 1e4 nats at step 0), which costs
# those families 3-6 nats after 10 epochs on MNIST (docs/explanation/training_quality.md).
INITS = {"uniform": _uniform, "he": _he, "glorot": _glorot, "uniform-0.05": _uniform_005}


def init_dense(rng, W, b, activation, scheme="uniform"):
    """Fill W (Din, Dout) and b (Dout,) in place by the scheme ``scheme`` (a name in INITS), drawing from
    the NumPy generator ``rng``; ``activation`` is the one applied to this layer's output."""
    try:
        fill = INITS[scheme]
    except KeyError:
        raise ValueError(f"unknown initialisation {scheme!r}; expected one of {sorted(INITS)}") from None
    fill(rng, W, b, activation)


def dropout_mask(rng, shape, rate, dtype):
    """Inverted dropout's mask of ``shape`` and ``dtype`` (a NumPy dtype), drawn from ``rng`` (a generator of
    the device's array module): 0 with probability ``rate``, else 1 / (1 - rate), so that the expected
    activations are the undropped ones."""
    return (rng.random(shape, dtype=dtype) >= rate).astype(dtype) * dtype.type(1 / (1 - rate))


class MLP:
    """x -> act(... act(x W0 + b0) ...) W_last + b_last, hidden activation ``activation``."""

    def __init__(self, sizes, activation, prefix, out_activation="linear"):
        for act in (activation, out_activation):
            if act not in ACTIVATIONS:
                raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"MLP sizes must be >= 2 positive integers, got {sizes}")
        self.sizes = [int(s) for s in sizes]
        self.prefix = prefix
        self.activations = [activation] * (len(sizes) - 2) + [out_activation]

    def shapes(self):
        out = {}
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            out[f"{self.prefix}W{i}"] = (a, b)
            out[f"{self.prefix}b{i}"] = (b,)
        return out

    def init(self, rng, params, scheme="uniform", zero_output=False):
        """Fill this network's parameters in ``params`` in place, layer by layer (W then b), by ``scheme``
        (see :func:`init_dense`); with ``zero_output`` the output layer starts at zero (and draws nothing
        from ``rng``)."""
        for i, act in enumerate(self.activations):
            W, b = params[f"{self.prefix}W{i}"], params[f"{self.prefix}b{i}"]
            if zero_output and i == len(self.activations) - 1:
                W[...], b[...] = 0, 0
            else:
                init_dense(rng, W, b, act, scheme)

    def __call__(self, params, x, masks=None):
        return self.head(params, self.features(params, x, masks))

    def features(self, params, x, masks=None):
        """The last hidden layer's activations (x itself when there is no hidden layer). ``masks``: one
        array per hidden layer multiplying its activations (dropout's, :func:`dropout_masks`)."""
        for i, act in enumerate(self.activations[:-1]):
            x = ops.dense(x, params[f"{self.prefix}W{i}"], params[f"{self.prefix}b{i}"], act)
            if masks is not None:
                x = x * masks[i]
        return x

    def dropout_masks(self, rng, batch, rate, dtype, lead=()):
        """Inverted dropout (Srivastava et al. 2014) of every hidden layer for ``batch`` rows: arrays (*lead,
        batch, width) of :func:`dropout_mask`, drawn from ``rng``."""
        return [dropout_mask(rng, (*lead, batch, width), rate, dtype) for width in self.sizes[1:-1]]

    def head(self, params, h):
        """The output layer on the features h."""
        i = len(self.activations) - 1
        return ops.dense(h, params[f"{self.prefix}W{i}"], params[f"{self.prefix}b{i}"], self.activations[i])
