"""The VAE: stochastic layers z_1 (bottom) ... z_L (top) over the observations x, each with its own
posterior family.

Generative model: z_L ~ N(0, I); z_l | z_{l+1} ~ N(m, diag s^2), (m, raw s) from the network of layer
l+1 (s = softplus(raw) + floor); x | z_1 from the network of layer 1 and the likelihood.

Inference, q(z_1, ..., z_L | x), in one of two orders (``inference``):

- ``"bottom-up"`` (the IWAE paper's): q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}), each layer's encoder on
  the layer below;
- ``"top-down"`` (the Ladder VAE's order, Sonderby et al., "Ladder Variational Autoencoders"): a
  deterministic bottom-up pass h_l = the last hidden features of layer l's encoder on h_{l-1} (h_0 = x),
  then q(z_L|x) from h_L and q(z_l | z_{l+1}, x) from h_l and z_{l+1}: the encoder's output layer on h_l
  combined with z_{l+1} in one of two ways (``merge``):

  - ``"learned"``: the encoder's output layer on h_l plus z_{l+1} times the weight ``enc{l}.Wz`` (zero at
    first);
  - ``"precision"``: the LVAE's precision-weighted merge (Sonderby et al., eq. 18-19) of the bottom-up
    Gaussian N(mu_hat, P_hat^-1) from h_l with p(z_l | z_{l+1}) = N(m, diag s^2): precision P_hat +
    diag(s^-2), mean (P_hat + diag(s^-2))^-1 (P_hat mu_hat + s^-2 m) (``Family.merge``). Elementwise for
    the diagonal family; for a banded family the merged precision is banded with the full band of the
    stencil's largest offset w, factored by the banded Cholesky kernel in O(d w^2): O(d) for the chain,
    O(d c^2) for a grid or extended grid of c columns. The AR(1) and rank-one families have no merge.

  Either way q(z_l | .) and p(z_l | z_{l+1}) share their condition, so the KL between them is closed
  form given z_{l+1}.

Layer l (1 = bottom) owns the networks named ``enc{l}.`` (its posterior's head) and ``dec{l}.`` (from
z_l down: to the likelihood's parameters for l = 1, to p(z_{l-1} | z_l) above), with the tag dropped
for l = 1: a one-layer model has exactly the parameters ``enc.*``, ``dec.*``, ``lik.*`` it always had.
"""
import numpy as np

from .. import ops
from .layers import INITS, MLP
from .likelihoods import get_likelihood
from .params import FlatParams
from .posteriors import get_family

INFERENCE = ("bottom-up", "top-down")
MERGES = ("learned", "precision")


class StochasticLayer:
    """Layer ``index`` (1 = bottom) of a :class:`VAE`: ``size`` latent units with the posterior
    ``family``; ``encoder`` (an :class:`MLP` whose output is the family's head), ``decoder`` (an MLP
    from z_l to the parameters of what lies below it), ``top_down`` (the name of the weight that brings
    z_{l+1} into the head in top-down inference with the learned merge, None otherwise)."""

    def __init__(self, index, size, family, encoder, decoder, top_down=None):
        self.index, self.size, self.family = index, size, family
        self.encoder, self.decoder, self.top_down = encoder, decoder, top_down

    def __repr__(self):
        return f"StochasticLayer(z{self.index}: {self.size} units, {self.family.name} posterior)"


def layer_family(name, size, options=None, index=None):
    """The posterior family ``name`` (with ``options``: ``grid_shape``, ``floor``) for a layer of
    ``size`` units, checked: its head size is computed, so a lattice family on a size without an r x c
    lattice raises here. The ValueError names the layer (``index``, 1 = bottom) when one is given."""
    try:
        family = get_family(name, **(options or {}))
        family.head_size(size)
    except ValueError as e:
        raise ValueError(str(e) if index is None else f"stochastic layer {index} ({name}, {size} units): {e}") from None
    return family


def _per_layer(what, value, n, scalar):
    """``value`` (one item, ``scalar(value)`` true, or a sequence of n of them) as a list of n items."""
    if scalar(value):
        return [value] * n
    items = list(value)
    if len(items) != n:
        raise ValueError(f"{what}: expected one value for every stochastic layer or one per layer ({n}), "
                         f"got {len(items)}")
    return items


def layer_widths(hidden, n=None):
    """The hidden widths as a VAE or a training configuration takes them, one list of widths for every
    stochastic layer or a list of such lists (one per layer, bottom first), as a tuple of per-layer tuples
    of ints: n of them (one list is every layer's; lists per layer must be n), or with ``n`` None as many
    as were given (one list: one). The one place that tells the two forms apart."""
    items = list(hidden)
    nested = [isinstance(v, (list, tuple)) for v in items]
    if any(nested) and not all(nested):
        raise ValueError(f"hidden mixes widths and lists of widths: {items}")
    one = not any(nested)  # one list for every layer
    if n is None:
        n = 1 if one else len(items)
    return tuple(tuple(int(h) for h in widths) for widths in _per_layer("hidden", items, n, lambda v: one))


class VAE:
    """Stochastic layers of sizes ``latent`` (an int, or a sequence bottom first) over n_in observed units.

    ``hidden``: the hidden widths of every layer's encoder (its decoder mirrors them), or a sequence of
    such lists, one per layer (kept as ``hidden``, a tuple of one tuple per layer: :func:`layer_widths`);
    ``posterior``: a family name for every layer or one per layer; ``posterior_options``: a dict for
    every layer or one per layer (``grid_shape``, ``floor``); ``inference``: "bottom-up" or "top-down"
    (see the module's docstring; the same for one layer); ``merge``: how top-down inference brings
    z_{l+1} into layer l's posterior, "learned" or "precision" (the latter only with "top-down", and only
    for the families with a ``merge``: see the module's docstring).

    ``layers`` lists the :class:`StochasticLayer` s bottom first (``layers[0]`` is the bottom layer:
    its posterior, networks and size, what :meth:`encode` gives and :meth:`decode` takes).
    Parameters live in one :class:`FlatParams` buffer (float32 by default), layer by layer (encoder,
    top-down weight, decoder), then the likelihood's own ``lik.*``; the networks' weights are initialised
    by the scheme ``init`` (a name in :data:`gvae.model.layers.INITS`)."""
    # Whether every q(z_l | x) is a function of x alone with an N(0, I) prior: in a hierarchy a layer's q or
    # prior is conditional on a sample of its neighbour (the ladder's codes are independent).
    independent_codes = False
    decoded_codes = 1  # the decoder reads z_1 alone (likelihood_params of a pass's codes is decode(z_1))

    @property
    def prior_text(self):
        """What a prior draw is, in words (a picture's title)."""
        if len(self.layers) == 1:
            return f"z ~ N(0, I), d = {self.sizes[0]}"
        return f"ancestral draws z{len(self.layers)} ~ N(0, I) ... z1, d = " + "-".join(map(str, self.sizes))

    def __init__(self, n_in, latent, hidden, activation="elu", posterior="diagonal",
                 likelihood="bernoulli", dtype=np.float32, posterior_options=None, likelihood_options=None,
                 inference="bottom-up", init="uniform", merge="learned"):
        sizes = [int(latent)] if np.ndim(latent) == 0 else [int(d) for d in latent]
        if not sizes or min(sizes) < 1 or int(n_in) < 1:
            raise ValueError(f"latent and input sizes must be positive, got {latent} and {n_in}")
        if init not in INITS:
            raise ValueError(f"unknown initialisation {init!r}; expected one of {sorted(INITS)}")
        self.init = init
        if inference not in INFERENCE:
            raise ValueError(f"unknown inference order {inference!r}; expected one of {list(INFERENCE)}")
        if merge not in MERGES:
            raise ValueError(f"unknown merge {merge!r}; expected one of {list(MERGES)}")
        if merge == "precision" and inference != "top-down":
            raise ValueError(f"merge 'precision' merges a layer's posterior with its conditional prior in top-down "
                             f"inference; got inference {inference!r} (use inference 'top-down' or merge 'learned')")
        self.merge = merge
        n = len(sizes)
        names = _per_layer("posterior", posterior, n, lambda v: isinstance(v, str))
        options = _per_layer("posterior_options", posterior_options or {}, n, lambda v: isinstance(v, dict))
        self.n_in, self.sizes = int(n_in), tuple(sizes)
        self.hidden = layer_widths(hidden, n)
        self.activation, self.inference = activation, inference
        self.likelihood = get_likelihood(likelihood, self.n_in, **(likelihood_options or {}))
        self.dtype = np.dtype(dtype)
        self.conditional = get_family("diagonal")  # the form of p(z_l | z_{l+1}): N(mu, diag sigma^2)
        self.layers = []
        below = self.n_in  # width of what layer l's encoder reads
        for i, (d, widths, name, opts) in enumerate(zip(sizes, self.hidden, names, options)):
            tag = "" if i == 0 else str(i + 1)
            family = layer_family(name, d, opts, i + 1 if n > 1 else None)
            head = family.head_size(d)
            out = self.likelihood.output_size() if i == 0 else self.conditional.head_size(sizes[i - 1])
            if merge == "precision" and i < n - 1 and not family.mergeable:
                raise ValueError(f"stochastic layer {i + 1} ({name}): the {name} posterior has no precision merge; "
                                 f"merge 'precision' needs diagonal, chain, grid, extgrid or full below the top layer")
            top_down = f"enc{tag}.Wz" if inference == "top-down" and merge == "learned" and i < n - 1 else None
            self.layers.append(StochasticLayer(i + 1, d, family, MLP([below, *widths, head], activation, f"enc{tag}."),
                                               MLP([d, *widths[::-1], out], activation, f"dec{tag}."), top_down))
            below = d if inference == "bottom-up" else (widths[-1] if widths else below)
        self.noise_size = sum(sizes)

    def networks(self):
        """Every network of the model: each layer's encoder and decoder, bottom up."""
        return [net for layer in self.layers for net in (layer.encoder, layer.decoder)]

    def param_shapes(self):
        """{name: shape} of every parameter, in the order of the flat buffer."""
        shapes = {}
        for i, layer in enumerate(self.layers):
            shapes.update(layer.encoder.shapes())
            if layer.top_down:
                shapes[layer.top_down] = (self.sizes[i + 1], layer.encoder.sizes[-1])
            shapes.update(layer.decoder.shapes())
        return {**shapes, **self.likelihood.param_shapes()}

    def new_params(self, rng, x=None):
        """A freshly initialised :class:`FlatParams` on the host, drawn from the NumPy generator ``rng``
        (so that a seed gives the same model on every device; ``.on(device)`` moves it).

        The networks that only hierarchies have start with their output layers at zero, and top-down
        weights at zero: at first q(z_l | .) (l > 1) is the family at head 0 (mean 0, scales about 1)
        and p(z_l | z_{l+1}) = N(0, (log 2 + floor)^2 I). With random output layers, unit-scale samples
        passed up through the encoders above gave scales of e^-3 and below, so samples of 10^2 and
        conditional-prior scales at the floor: initial KL terms of 10^9 nats with ELU networks.

        With the training data ``x`` (N, n_in) in [0, 1] on the host, the "uniform" scheme also starts the
        decoder's last bias where the likelihood predicts the data's marginal (``Likelihood.output_bias``:
        the pixel means' logits for Bernoulli; Burda et al.'s IWAE code does the same), which is worth
        0.2-0.6 nats of test ELBO after 10 epochs on MNIST (docs/explanation/training_quality.md)."""
        params = FlatParams(self.param_shapes(), self.dtype)
        for i, layer in enumerate(self.layers):
            layer.encoder.init(rng, params.views, self.init, zero_output=i > 0)
            layer.decoder.init(rng, params.views, self.init, zero_output=i > 0)
        self.likelihood.init(rng, params.views)
        bias = None if x is None or self.init != "uniform" else self.likelihood.output_bias(x)
        if bias is not None:
            params.views[f"dec.b{len(self.layers[0].decoder.activations) - 1}"][...] = bias
        return params

    def split_noise(self, eps):
        """Standard normal noise (..., noise_size) -> a list, bottom first, of each layer's (..., d_l)."""
        if len(self.layers) == 1:
            return [eps]
        ends = np.cumsum(self.sizes)
        return [eps[..., end - d:end] for d, end in zip(self.sizes, ends)]

    def infer(self, params, x, eps=None):
        """The posterior pass over x (B, n_in): ``(qs, zs)``, lists bottom first of each layer's family
        parameters q_l and of z_l = sample(q_l, eps_l) for noise eps (S, B, noise_size) (each layer's
        slice, :meth:`split_noise`), or with ``eps=None`` z_l = the mean of q_l, shape (B, d_l): the pass
        that conditions every layer on the means of the others (deterministic). A layer conditioned on
        S samples has parameters of batch shape (S, B)."""
        noise = self.split_noise(eps) if eps is not None else [None] * len(self.layers)
        return self._pass(params, x, lambda i, q: q.mu if noise[i] is None else self.layers[i].family.sample(q, noise[i]))

    def log_q(self, params, x, zs):
        """log q(z_1, ..., z_L | x) of given samples zs (bottom first, (..., B, d_l)): the pass conditioned
        on them, each layer's log-density summed."""
        qs, _ = self._pass(params, x, lambda i, q: zs[i])
        total = None
        for layer, q, z in zip(self.layers, qs, zs):
            term = layer.family.log_prob(q, z)
            total = term if total is None else total + term
        return total

    def mean_heads(self, params, x):
        """The head values (B, head_size(d_l)) of each layer, bottom first, in the mean pass (:meth:`infer`
        with ``eps=None``): the amortised q's parameters as the family's ``split`` takes them. Not defined
        for the precision merge (its q is the merge of a head with the prior, not a head)."""
        if len(self.layers) > 1 and self.inference == "top-down" and self.merge == "precision":
            raise ValueError("the precision merge's posterior is not a head of its family: its heads are not "
                             "defined (use the learned merge, or bottom-up inference)")
        heads = []
        self._pass(params, x, lambda i, q: q.mu, heads)
        return heads

    def _pass(self, params, x, pick, heads=None):
        """The posterior pass with z_l = pick(l, q_l) (l from 0 at the bottom): ``(qs, zs)``, each layer's
        head appended to ``heads`` when given (bottom first)."""
        qs, zs = [None] * len(self.layers), [None] * len(self.layers)
        found = [None] * len(self.layers)
        if self.inference == "bottom-up":
            h = x
            for i, layer in enumerate(self.layers):
                found[i] = layer.encoder(params, h)
                qs[i] = layer.family.split(found[i], layer.size)
                h = zs[i] = pick(i, qs[i])
        else:
            features, h = [], x
            for layer in self.layers:
                h = layer.encoder.features(params, h)
                features.append(h)
            z = None
            for i in range(len(self.layers) - 1, -1, -1):
                layer = self.layers[i]
                head = layer.encoder.head(params, features[i])
                if z is not None and self.merge == "learned":
                    head = head + ops.matmul(z, params[layer.top_down])
                found[i] = head
                q = layer.family.split(head, layer.size)
                if z is not None and self.merge == "precision":
                    q = layer.family.merge(q, self.prior(params, i, z))
                qs[i] = q
                z = zs[i] = pick(i, q)
        if heads is not None:
            heads.extend(found)
        return qs, zs

    def encode(self, params, x):
        """x (B, n_in) -> the bottom layer's posterior parameters (its family's record); in a
        hierarchy, that of the mean pass (:meth:`infer` with ``eps=None``)."""
        if len(self.layers) == 1:
            bottom = self.layers[0]
            return bottom.family.split(bottom.encoder(params, x), bottom.size)
        return self.infer(params, x)[0][0]

    def prior(self, params, i, z_above):
        """p(z_i | z_{i+1}) for layer i (0 = bottom) below the top, from the layer above's sample
        z_above (..., d_{i+1}): a ``DiagonalParams`` (mu, sigma) of shape (..., d_i)."""
        return self.conditional.split(self.layers[i + 1].decoder(params, z_above), self.sizes[i])

    def priors(self, params, zs):
        """The conditional priors of a pass's samples zs: a list bottom first of :meth:`prior` of each
        layer below the top, then None for the top layer's N(0, I)."""
        return [self.prior(params, i, zs[i + 1]) for i in range(len(self.layers) - 1)] + [None]

    def prior_sample(self, params, eps):
        """Ancestral sampling from the top: eps (..., noise_size) standard normal -> a list, bottom first,
        of z_l (..., d_l): z_L = eps_L, z_l = m + s * eps_l with (m, s) of p(z_l | z_{l+1})."""
        noise = self.split_noise(eps)
        zs = [noise[-1]]
        for i in range(len(self.layers) - 2, -1, -1):
            zs.insert(0, self.conditional.sample(self.prior(params, i, zs[0]), noise[i]))
        return zs

    def likelihood_params(self, params, zs):
        """The likelihood's parameters for a pass's samples zs (bottom first): :meth:`decode` of z_1."""
        return self.decode(params, zs[0])

    def decode(self, params, z):
        """z_1 (..., d_1) -> likelihood parameters (..., output size)."""
        return self.layers[0].decoder(params, z)
