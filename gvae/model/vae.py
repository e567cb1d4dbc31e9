"""The VAE: encoder MLP -> posterior family head, decoder MLP -> likelihood parameters."""
import numpy as np

from .layers import INITS, MLP
from .likelihoods import get_likelihood
from .params import FlatParams
from .posteriors import get_family


class VAE:
    """Encoder n_in -> hidden... -> head(d); decoder d -> reversed(hidden)... -> likelihood output.

    Parameters live in one :class:`FlatParams` buffer (float32 by default) under the names
    ``enc.W{i}``, ``enc.b{i}``, ``dec.W{i}``, ``dec.b{i}`` and the likelihood's own ``lik.*``; the
    networks' weights are initialised by the scheme ``init`` (a name in :data:`gvae.model.layers.INITS`)."""

    def __init__(self, n_in, latent, hidden, activation="elu", posterior="diagonal",
                 likelihood="bernoulli", dtype=np.float32, posterior_options=None, likelihood_options=None,
                 init="uniform"):
        if int(latent) < 1 or int(n_in) < 1:
            raise ValueError(f"latent and input sizes must be positive, got {latent} and {n_in}")
        if init not in INITS:
            raise ValueError(f"unknown initialisation {init!r}; expected one of {sorted(INITS)}")
        self.init = init
        self.n_in, self.latent = int(n_in), int(latent)
        self.hidden = [int(h) for h in hidden]
        self.activation = activation
        self.family = get_family(posterior, **(posterior_options or {}))
        self.likelihood = get_likelihood(likelihood, **(likelihood_options or {})).setup(self.n_in)
        self.dtype = np.dtype(dtype)
        self.encoder = MLP([self.n_in, *self.hidden, self.family.head_size(self.latent)], activation, "enc.")
        self.decoder = MLP([self.latent, *self.hidden[::-1], self.likelihood.output_size()],
                           activation, "dec.")

    def param_shapes(self):
        """{name: shape} of every parameter, in the order of the flat buffer."""
        return {**self.encoder.shapes(), **self.decoder.shapes(), **self.likelihood.param_shapes()}

    def new_params(self, rng, x=None):
        """A freshly initialised :class:`FlatParams` on the host, drawn from the NumPy generator ``rng``
        (so that a seed gives the same model on every device; ``.on(device)`` moves it).

        With the training data ``x`` (N, n_in) in [0, 1] on the host, the "uniform" scheme also starts the
        decoder's last bias where the likelihood predicts the data's marginal (``Likelihood.output_bias``:
        the pixel means' logits for Bernoulli; Burda et al.'s IWAE code does the same), which is worth
        0.2-0.6 nats of test ELBO after 10 epochs on MNIST (docs/training_quality.md)."""
        params = FlatParams(self.param_shapes(), self.dtype)
        self.encoder.init(rng, params.views, self.init)
        self.decoder.init(rng, params.views, self.init)
        self.likelihood.init(rng, params.views)
        bias = None if x is None or self.init != "uniform" else self.likelihood.output_bias(x)
        if bias is not None:
            params.views[f"dec.b{len(self.decoder.activations) - 1}"][...] = bias
        return params

    def encode(self, params, x):
        """x (B, n_in) -> the family's parameters of q(z|x)."""
        return self.family.split(self.encoder(params, x), self.latent)

    def decode(self, params, z):
        """z (..., d) -> likelihood parameters (..., output size)."""
        return self.decoder(params, z)
