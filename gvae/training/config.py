"""What defines a training run: :class:`TrainConfig` (saved as the run's ``config.json``) and the
learning-rate schedules it names.

Each field states, in its metadata, what the ``gvae train`` flag of the same name says in ``--help``
(``help``), how the command line parses it (``parse``: a function that raises ``ValueError`` with a
message, or ``choices``), and its ``metavar``/``nargs``: the command line is built from this class, so a
default is written once, here."""
import dataclasses
import math

import numpy as np

from ..kernels.activations import ACTIVATIONS
from ..model import FAMILIES, INITS, LIKELIHOODS
from ..model.vae import INFERENCE, MERGES, layer_family, layer_widths
from .tasks import TASKS, task_class
from .tasks.base import field_defaults


# The largest count a flag takes (a size, a number of samples, epochs, ...): 2^31 - 1, the largest index of a
# CUDA kernel's int and far beyond any array this machine holds. Larger values would reach NumPy as shapes
# ("Maximum allowed dimension exceeded") or a factorisation loop of the lattice stencils before any check.
MOST = 2 ** 31 - 1


def _number_parser(kind, noun, strict, most=None):
    """A parser of ``kind`` (int or float) from text that accepts finite values > 0 (``strict``) or >= 0
    (and at most ``most`` when given), raising ValueError with a message that names the expected ``noun``."""
    def parse(text):
        try:
            v = kind(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected a {noun}, got {text!r}") from None
        if not (math.isfinite(v) and (v > 0 if strict else v >= 0)):
            raise ValueError(f"expected a {noun}, got {text}")
        if most is not None and v > most:
            raise ValueError(f"expected a {noun} of at most {most}, got {text}")
        return v
    parse.__name__ = noun.replace(" ", "_").replace("-", "_")
    return parse


def largest_rate_control(dtype):
    """The largest weight or target of the loss (a field declared with :data:`LOSS_WEIGHTS`: --beta, --mmd,
    --target-rate, --mi-weight, ...) a run in ``dtype`` ("float32", "float64") takes."""
    # A weight W (beta, mmd) scales its term's gradient, and the step squares the gradient in the training
    # dtype (the norm's per-block sums, Adam's second moment): W times a gradient entry must stay below
    # sqrt(max), 1.8e19 in float32, or every step is non-finite (beta 3e19 was, on the smallest model).
    # The terms' gradient entries are below 1 per unit weight at the start (784-500-500-16 on MNIST-sized
    # data); the bound leaves them a factor 1e6 of growth: sqrt(max) / 1e6, rounded down to a power of ten
    # (1e13 in float32, 1e148 in float64). A target rate S enters the loss at its own size (|S - R|), so it
    # is held to the same bound.
    return 10.0 ** (math.floor(math.log10(math.sqrt(float(np.finfo(dtype).max)))) - 6)


positive_int = _number_parser(int, "positive integer", strict=True, most=MOST)
non_negative_int = _number_parser(int, "non-negative integer", strict=False)
positive_float = _number_parser(float, "positive finite number", strict=True)
non_negative_float = _number_parser(float, "non-negative finite number", strict=False)
# The parsers of the loss's weights and targets: a field declared with one of them is held to
# largest_rate_control in the run's dtype (TrainConfig._check_loss_weights), so that no weight, a new one
# included, can make every step overflow.
loss_weight = _number_parser(float, "non-negative finite number", strict=False)
positive_loss_weight = _number_parser(float, "positive finite number", strict=True)
LOSS_WEIGHTS = (loss_weight, positive_loss_weight)


def _interval_parser(interval, inside):
    """A parser of a float from text that accepts the values ``inside(v)`` holds for, raising ValueError
    that names ``interval`` (its text, "[0, 1)") otherwise."""
    def parse(text):
        try:
            v = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number in {interval}, got {text!r}") from None
        if not inside(v):
            raise ValueError(f"expected a number in {interval}, got {text}")
        return v
    parse.__name__ = "number_in_" + interval
    return parse


fraction = _interval_parser("[0, 1)", lambda v: 0 <= v < 1)          # a decay rate
decay_factor = _interval_parser("(0, 1]", lambda v: 0 < v <= 1)      # a learning rate's decay per step

# Separates the stochastic layers' lists of hidden widths on the command line: --hidden 200 200 / 100 100.
LAYER_SEPARATOR = "/"


def hidden_width(text):
    """A --hidden token: a positive integer width, or the layer separator '/'."""
    return LAYER_SEPARATOR if text == LAYER_SEPARATOR else positive_int(text)


def invalid(message):
    return ValueError(f"invalid training configuration: {message}")


def unit_indices(name, value):
    """A sequence of unit indices (ints >= 0) as a tuple; the error names ``name`` otherwise."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") or not all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 0 for k in value):
        raise invalid(f"{name} must be a list of unit indices (integers >= 0), got {value!r}")
    return tuple(int(k) for k in value)


def _one_or_many(name, value, kind):
    """One value, or a sequence of them as a tuple (a sequence of one: that value, so a one-layer
    configuration reads as it always did)."""
    if not isinstance(value, (list, tuple)):
        return kind(value)
    items = tuple(kind(v) for v in value)
    if not items:
        raise invalid(f"{name} needs at least one value")
    return items[0] if len(items) == 1 else items


def _hidden_groups(value):
    """--hidden as given (widths, widths and '/' separators, or nested lists) -> the tuples of widths it
    gives, one per layer or one for every layer (:func:`gvae.model.vae.layer_widths` with n None)."""
    value = tuple(value)
    if LAYER_SEPARATOR in value:
        groups = [[]]
        for v in value:
            if v == LAYER_SEPARATOR:
                groups.append([])
            else:
                groups[-1].append(v)
        if not all(groups):
            raise invalid(f"hidden {' '.join(map(str, value))} has an empty list of widths beside a "
                           f"'{LAYER_SEPARATOR}'; expected e.g. --hidden 200 200 {LAYER_SEPARATOR} 100 100")
        value = groups
    try:
        return layer_widths(value)
    except ValueError as e:
        raise invalid(str(e)) from None


def _grid_pairs(value):
    """--grid-shape as given (R C numbers, or nested pairs) -> None, one pair (R, C), or a tuple of pairs."""
    if value is None:
        return None
    flat = [int(v) for item in value for v in (item if isinstance(item, (list, tuple)) else (item,))]
    if not flat or len(flat) % 2:
        raise invalid(f"grid_shape takes pairs R C, one per layer whose family is on a lattice; got "
                       f"{len(flat)} numbers")
    pairs = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
    return pairs[0] if len(pairs) == 1 else pairs


def option(default, help, **cli):
    """A dataclass field whose metadata describes its command-line flag."""
    if isinstance(default, tuple):
        return dataclasses.field(default_factory=lambda: default, metadata={"help": help, **cli})
    return dataclasses.field(default=default, metadata={"help": help, **cli})


def iwae_schedule(epoch, lr):
    """The IWAE paper's rate: stage i (i = 0..7) lasts 3^i epochs at lr * 10^(-i/7) (3280 in all);
    later epochs stay at the last stage's rate. ``epoch`` counts from 0."""
    stage, end = 0, 1
    while epoch >= end and stage < 7:
        stage += 1
        end += 3 ** stage
    return lr * 10 ** (-stage / 7)


SCHEDULES = {"constant": lambda epoch, lr: lr, "iwae": iwae_schedule}


def learning_rate(config, epoch):
    """Adam's rate in epoch ``epoch`` (from 0): the schedule's, times lr_decay once every lr_decay_epochs
    epochs (a staircase, as Alemi et al. decay the deep VIB's rate by 0.97 every 2 epochs)."""
    return SCHEDULES[config.schedule](epoch, config.lr) * config.lr_decay ** (epoch // config.lr_decay_epochs)

IWAE_SCHEDULE_EPOCHS = sum(3 ** i for i in range(8))
# What may change when a run is resumed (each change is recorded in the metrics); everything else is the
# run's own configuration.
RESUMABLE = ("epochs", "lr", "max_bad_steps", "patience")

# Settings added after runs were first written, each with the value every run written before it used:
# a config.json without the field describes a run made that way (checkpoint.config_of reads it so).
FORMER_DEFAULTS = {"init": "he"}


def setting_fields():
    """{name: dataclasses.Field} of every setting a run may have, one ``gvae train`` flag each: TrainConfig's
    fields (but ``options``), then the options of each registered task (:data:`TASKS`; a field that several
    tasks share, such as the binary units' --estimator, once)."""
    out = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name != "options"}
    for task in TASKS.values():
        for name, f in option_fields(task).items():
            out.setdefault(name, f)
    return out


def setting_defaults():
    """{name: default} of every setting (:func:`setting_fields`)."""
    return {name: _default(f) for name, f in setting_fields().items()}


def _registered(name):
    """The task registered as ``name``; the invalid-configuration ValueError naming the registered ones
    otherwise."""
    try:
        return task_class(name)
    except ValueError as e:
        raise invalid(str(e)) from None


def option_fields(task):
    """{name: dataclasses.Field} of the options of ``task`` (a :class:`Task` subclass)."""
    return {f.name: f for f in dataclasses.fields(task.settings.Options)}


def _default(f):
    """The default of the dataclass field ``f`` (a default factory's value for a list)."""
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _plain(value):
    """A setting's value as config.json holds it, its tuples as lists: a default compared with a value read."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def check_settings(checks):
    """Raise the invalid-configuration ValueError with the message of the first ``(ok, message)`` pair of
    ``checks`` that is not ok."""
    for ok, message in checks:
        if not ok:
            raise invalid(message)


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``config.json``."""
    task: str = option("generate", lambda: "what the run learns: " + "; ".join(f"{name}, {task.settings.about}"
                                                                              for name, task in TASKS.items())
                       + " (--model NAME is the same flag)", choices=TASKS, aliases=("model",))
    # The settings only the task reads: an instance of its Options dataclass (a dict of them, or None for
    # their defaults, is made one); each field is a gvae train flag of its own.
    options: object = None
    posterior: object = option("diagonal", "posterior family of q(z|x): one name for every stochastic layer, "
                                "or one per layer, bottom first (" + ", ".join(sorted(FAMILIES)) + ")",
                                choices=sorted(FAMILIES), nargs="+", metavar="NAME")
    grid_shape: object = option(None, "lattice R x C of the latent units of a grid/extgrid layer: one pair "
                                 "per layer whose family is on a lattice, bottom first (default: the most "
                                 "square R x C of each)", parse=positive_int, nargs="+", metavar="R C")
    latent: object = option(16, "latent units of each stochastic layer, bottom first (one number: one "
                             "layer; --latent 100 50: the IWAE paper's two layers)", parse=positive_int,
                             nargs="+", metavar="D")
    hidden: tuple = option((500, 500), "hidden widths of each stochastic layer's encoder, whose decoder "
                            f"mirrors them: one list for every layer, or one per layer, bottom first, "
                            f"separated by '{LAYER_SEPARATOR}' (--hidden 200 200 {LAYER_SEPARATOR} 100 100)",
                            parse=hidden_width, nargs="+", metavar="H")
    inference: str = option("bottom-up", "order of a hierarchy's posterior pass: bottom-up q(z1|x) q(z2|z1) "
                             "... (the IWAE paper's) or top-down q(zL|x) ... q(z1|z2, x) (the Ladder VAE's), "
                             "where each lower layer's KL term is closed form", choices=list(INFERENCE))
    merge: str = option("learned", "top-down inference: how z(l+1) enters q(zl|.): learned, the encoder's "
                         "head plus z(l+1) times a learned weight; precision, the Ladder VAE's precision-weighted "
                         "merge of the encoder's Gaussian with p(zl|z(l+1)) (diagonal, chain, grid, extgrid, full; "
                         "banded families through a banded Cholesky factor, O(d w^2) for the largest offset w)",
                         choices=list(MERGES))
    activation: str = option("elu", "hidden-layer activation",
                              choices=sorted(set(ACTIVATIONS) - {"linear"}))
    init: str = option("uniform", "initialisation of the networks: uniform, W and b ~ U(+-1/sqrt(fan_in)) "
                        "(PyTorch's nn.Linear), with a Bernoulli decoder's last bias at the logits of the mean "
                        "training image; he, He normal before rectifiers, Glorot uniform before the output "
                        "layers, zero biases (gvae's former default); glorot, Glorot uniform W ~ "
                        "U(+-sqrt(6/(fan_in + fan_out))) everywhere, zero biases (TensorFlow's layers); "
                        "uniform-0.05, W and b ~ U(-0.05, 0.05) (Wang et al.'s VCCA code)", choices=sorted(INITS))
    init_from: str = option(None, "start every parameter that the run in folder RUN also has (the same name and "
                             "shape) at RUN's best parameters, the others as --init draws them; Adam starts afresh "
                             "(fine-tuning; a model grown from a trained one, as a DARN given its autoregressive "
                             "visible layer; default: none)", metavar="RUN")
    likelihood: str = option("bernoulli", "observation model p(x|z)", choices=sorted(LIKELIHOODS))
    psi: str = option("global", "gaussian likelihood: one learned variance per pixel, or one per data "
                       "point from the decoder", choices=["global", "decoder"])
    pixel_factor: str = option("decoder", "logitnormal likelihoods: the precision factor over pixels from "
                                "the decoder, or one learned factor", choices=["decoder", "global"])
    squash: float = option(1e-6, "continuous likelihoods: dequantised pixels are squashed into "
                            "(LAMBDA, 1 - LAMBDA)", parse=positive_float, metavar="LAMBDA")
    binarization: str = option("dynamic", "binary pixels of the training images: dynamic, drawn afresh every "
                                "epoch; static, drawn once with a fixed seed, the same for every run (the statically "
                                "binarised MNIST protocol); the validation and test images are drawn once either "
                                "way", choices=["dynamic", "static"])
    epochs: int = option(10, "passes over the training images", parse=positive_int, metavar="E")
    batch_size: int = option(100, "training images per Adam step", parse=positive_int, metavar="B")
    lr: float = option(1e-3, "Adam learning rate (per step)", parse=positive_float, metavar="LR")
    kl: str = option("analytic", "KL term in closed form (SGVB-B) or by Monte Carlo (SGVB-A)",
                      choices=["analytic", "mc"])
    warmup: float = option(0.0, "raise the KL weight linearly from 0 to 1 over this many epochs",
                            parse=non_negative_float, metavar="EPOCHS")
    beta: float = option(1.0, "weight B of the rate in the loss D + B R, with R = KL(q(z|x) || p(z)) and D = "
                          "-E_q log p(x|z) (the beta-VAE; 1: the ELBO; times the warm-up's weight); with --task "
                          "classify, the VIB's beta: the loss is B R - E_q log q(y|z) (the paper's MNIST model: "
                          "1e-3)",
                          parse=loss_weight, metavar="B")
    target_rate: float = option(None, "train on D + |S - R| instead, R the batch's mean rate in nats (Alemi "
                                 "et al., 'Fixing a broken ELBO'); default: no target", parse=loss_weight,
                                 metavar="S")
    alpha: float = option(0.0, "InfoVAE's alpha: the rate's weight becomes (1 - A) times beta (Zhao et al.; "
                           "1 with --mmd: the MMD-VAE)", parse=non_negative_float, metavar="A")
    mmd: float = option(0.0, "add W MMD^2 between the batch's posterior samples of the top layer and as many "
                         "draws of N(0, I) (InfoVAE; W = alpha + lambda - 1 in Zhao et al.'s terms; 0: none)",
                         parse=loss_weight, metavar="W")
    mmd_kernel: str = option("imq", "the MMD's kernel: inverse multiquadratic C / (C + |a - b|^2) or Gaussian "
                              "exp(-|a - b|^2 / C), C = 2 d", choices=["imq", "rbf"])
    samples: int = option(1, "Monte Carlo samples of z per image for the ELBO", parse=positive_int,
                           metavar="S")
    iw_samples: int = option(1, "importance samples per image (K > 1: train on the IWAE bound)",
                              parse=positive_int, metavar="K")
    schedule: str = option("constant", "learning rate: constant, --lr throughout; or iwae, the IWAE paper's "
                            "stages i = 0, ..., 7 of 3^i epochs each at --lr x 10^(-i/7) (3280 epochs; later "
                            "epochs stay at the last stage's rate)", choices=sorted(SCHEDULES))
    lr_decay: float = option(1.0, "multiply the learning rate by R every --lr-decay-epochs epochs, on top of "
                              "--schedule (Alemi et al.'s deep VIB: 0.97 every 2 epochs; 1: no decay)",
                              parse=decay_factor, metavar="R")
    lr_decay_epochs: int = option(1, "epochs between two steps of --lr-decay", parse=positive_int, metavar="N")
    adam_beta1: float = option(0.9, "Adam's beta1, the decay of its running mean of the gradients (Alemi et al. "
                                "train the deep VIB with 0.5)", parse=fraction, metavar="B1")
    polyak: float = option(0.0, "Polyak averaging: after every step a <- D a + (1 - D) theta, bias-corrected as "
                            "Adam's moments are, and the average is what is validated, tested and kept as the best "
                            "model (Alemi et al.'s deep VIB: 0.999; 0: none)", parse=fraction, metavar="D")
    seed: int = option(0, "seed of the initialisation, the data order, the binarisation and the noise",
                        parse=non_negative_int, metavar="S")
    limit: int = option(None, "use only the first N training images (default: all)", parse=positive_int,
                         metavar="N")
    clip_norm: float = option(None, "clip the global gradient norm to C (default: no clipping)",
                               parse=positive_float, metavar="C")
    max_bad_steps: int = option(20, "stop after N steps in a row with a non-finite loss or gradient",
                                 parse=positive_int, metavar="N")
    test_params: str = option("best", "the parameters the run's test summary measures: best, the epoch's with the "
                               "best validation score; last, the last epoch's (with --polyak, its average), as a "
                               "paper that trains a fixed budget without early stopping reports",
                               choices=["best", "last"])
    patience: int = option(None, "stop early when the validation ELBO (classify: the validation error) "
                            "has not improved for N epochs (default: never)", parse=positive_int, metavar="N")
    dtype: str = option("float32", "floating-point type of parameters and computation",
                         choices=["float32", "float64"])

    def __post_init__(self):
        self._task_options()
        self.latent = _one_or_many("latent", self.latent, int)
        self.posterior = _one_or_many("posterior", self.posterior, str)
        self.grid_shape = _grid_pairs(self.grid_shape)
        hidden = _hidden_groups(self.hidden)
        counts = [*self.layer_sizes(), *(h for widths in hidden for h in widths), self.batch_size,
                  self.samples, self.iw_samples, self.epochs]
        checks = [(max(counts) <= MOST, f"latent, hidden, batch_size, samples, iw_samples and epochs must be at most "
                                        f"{MOST}"),
                  (min(self.layer_sizes()) >= 1, "latent must be >= 1"), (self.epochs >= 1, "epochs must be >= 1"),
                  (self.batch_size >= 1, "batch size must be >= 1"), (self.lr > 0, "lr must be > 0"),
                  (self.samples >= 1, "samples must be >= 1"), (self.warmup >= 0, "warmup must be >= 0"),
                  (self.iw_samples >= 1, "iw_samples must be >= 1"),
                  (math.isfinite(self.beta) and self.beta >= 0, "beta must be a finite number >= 0"),
                  (self.target_rate is None or (math.isfinite(self.target_rate) and self.target_rate >= 0),
                   "target_rate must be a finite number >= 0"),
                  (self.target_rate is None or (self.beta == 1 and self.warmup == 0 and self.iw_samples == 1),
                   "a target rate sets the rate's weight itself: use it without beta, warmup or iw_samples"),
                  (math.isfinite(self.alpha) and 0 <= self.alpha <= 1, "alpha must lie in [0, 1]"),
                  (math.isfinite(self.mmd) and self.mmd >= 0, "mmd must be a finite number >= 0"),
                  (self.mmd_kernel in ("imq", "rbf"), "mmd_kernel must be 'imq' or 'rbf'"),
                  (self.mmd == 0 or (self.iw_samples == 1 and self.target_rate is None),
                   "the MMD term is added to the ELBO: use it without iw_samples or target_rate"),
                  (self.samples == 1 or self.iw_samples == 1,
                   "use either Monte Carlo samples for the ELBO or importance samples, not both"),
                  (self.schedule in SCHEDULES, f"schedule must be one of {sorted(SCHEDULES)}"),
                  (0 < self.lr_decay <= 1, "lr_decay must lie in (0, 1]"),
                  (isinstance(self.lr_decay_epochs, int) and self.lr_decay_epochs >= 1, "lr_decay_epochs must be >= 1"),
                  (0 <= self.adam_beta1 < 1, "adam_beta1 must lie in [0, 1)"),
                  (0 <= self.polyak < 1, "polyak must lie in [0, 1)"),
                  (self.max_bad_steps >= 1, "max_bad_steps must be >= 1"),
                  (isinstance(self.seed, int) and self.seed >= 0, "seed must be an int >= 0"),
                  (self.limit is None or self.limit >= 1, "limit must be >= 1"),
                  (self.patience is None or self.patience >= 1, "patience must be >= 1"),
                  (all(h >= 1 for widths in hidden for h in widths), "hidden sizes must be >= 1"),
                  (self.inference in INFERENCE, f"inference must be one of {list(INFERENCE)}"),
                  (self.merge in MERGES, f"merge must be one of {list(MERGES)}"),
                  (self.merge == "learned" or self.inference == "top-down",
                   "merge 'precision' needs inference 'top-down' (it merges each lower layer's posterior with "
                   "its conditional prior p(zl|z(l+1)))"),
                  (self.kl in ("analytic", "mc"), "kl must be 'analytic' or 'mc'"),
                  (self.binarization in ("dynamic", "static"), "binarization must be 'dynamic' or 'static'"),
                  (self.test_params in ("best", "last"), "test_params must be 'best' or 'last'"),
                  (self.binarization == "dynamic" or not getattr(LIKELIHOODS.get(self.likelihood), "continuous", False),
                   f"binarization static binarises the images: the {self.likelihood} likelihood models "
                   "intensities (use a binary likelihood, bernoulli or ar-bernoulli)"),
                  (self.init in INITS, f"init must be one of {sorted(INITS)}"),
                  (self.dtype in ("float32", "float64"), "dtype must be float32 or float64")]
        check_settings(checks)
        self._check_loss_weights()
        self._check_layers(len(hidden))
        # config.json's form: the widths once when every layer has the same, else a list per layer (before
        # the task's checks, which read the widths per layer).
        self.hidden = hidden[0] if len(set(hidden)) == 1 else hidden
        self._check_task()

    def layer_sizes(self):
        """The latent size of each stochastic layer, bottom first (a tuple)."""
        return self.latent if isinstance(self.latent, tuple) else (self.latent,)

    def layer_posteriors(self):
        """The posterior family name of each stochastic layer, bottom first."""
        n = len(self.layer_sizes())
        return self.posterior if isinstance(self.posterior, tuple) else (self.posterior,) * n

    def layer_hidden(self):
        """The hidden widths of each stochastic layer's networks, bottom first (a tuple of tuples)."""
        return layer_widths(self.hidden, len(self.layer_sizes()))

    def layer_grid_shapes(self):
        """Each layer's lattice (R, C), or None: the given pairs, in order, for the layers whose family
        lies on a lattice, None elsewhere (and everywhere when no grid shape is given)."""
        names = self.layer_posteriors()
        shapes = [None] * len(names)
        if self.grid_shape is None:
            return tuple(shapes)
        pairs = [self.grid_shape] if isinstance(self.grid_shape[0], int) else list(self.grid_shape)
        on_lattice = [i for i, name in enumerate(names) if FAMILIES[name].on_lattice]
        if not on_lattice:
            raise invalid(f"a grid shape applies only to the grid and extgrid families, not "
                           f"{', '.join(sorted(set(names)))}")
        if len(pairs) != len(on_lattice):
            raise invalid(f"grid_shape gives {len(pairs)} pair(s) R C for {len(on_lattice)} layer(s) on a lattice "
                           f"(layers {', '.join(str(i + 1) for i in on_lattice)}): give one pair per such layer, "
                           "bottom first")
        for i, pair in zip(on_lattice, pairs):
            shapes[i] = pair
        return tuple(shapes)

    def _check_loss_weights(self):
        """The loss's weights and targets (the fields, the task's options' included, declared with
        :data:`LOSS_WEIGHTS`) within what training in the run's dtype holds."""
        most = largest_rate_control(self.dtype)
        for source in (self, self.options):
            for f in dataclasses.fields(source):
                value = getattr(source, f.name)
                if f.metadata.get("parse") in LOSS_WEIGHTS and value is not None and value > most:
                    raise invalid(f"{f.name} {value:g} is beyond {self.dtype} training: {f.name} must be at most "
                                  f"{most:g} with dtype {self.dtype}, as every weight and target of the loss (beyond "
                                  "it the training steps overflow)")

    def _task_options(self):
        """:attr:`options` as an instance of the task's ``settings.Options`` (from a dict of its fields, or
        their defaults for None); ValueError for a task not registered or options of another."""
        task = _registered(self.task)
        if self.options is None or isinstance(self.options, dict):
            try:
                self.options = task.settings.Options(**(self.options or {}))
            except TypeError as e:
                raise invalid(f"--task {self.task} has no such option: {e}") from None
        elif type(self.options) is not task.settings.Options:
            raise invalid(f"options of --task {self.task} are a {task.settings.Options.__qualname__}, not a "
                          f"{type(self.options).__qualname__}")

    def _check_task(self):
        """The task's own checks (its ``settings.check``) and its binarisation."""
        task = task_class(self.task)
        if self.binarization != field_defaults(self)["binarization"] and not task.settings.binarizes:
            raise invalid(f"binarization applies to the tasks that binarise images, not --task {self.task}")
        try:
            task.settings.check(self)
        except ValueError as e:
            raise invalid(str(e)) from None

    @classmethod
    def of(cls, **settings):
        """The configuration of flat ``settings`` (name -> value: TrainConfig's fields and the task's options
        side by side, as gvae train's flags and config.json give them). A setting of another task is
        refused unless at its default: a config.json written before the options moved into the tasks lists
        every task's."""
        own = {f.name for f in dataclasses.fields(cls)} - {"options"}
        task = _registered(settings.get("task", "generate"))
        mine = {f.name for f in dataclasses.fields(task.settings.Options)}
        others = {name: f for t in TASKS.values() for name, f in option_fields(t).items() if name not in mine}
        for name, value in settings.items():
            if name in own or name in mine:
                continue
            if name not in others:
                raise invalid(f"unknown setting {name!r}")
            if _plain(value) != _plain(_default(others[name])):
                owners = " or ".join(t.name for t in TASKS.values() if name in option_fields(t))
                raise invalid(f"{name} applies to --task {owners} only")
        return cls(**{k: v for k, v in settings.items() if k in own},
                   options={k: v for k, v in settings.items() if k in mine})

    def flat(self):
        """{name: value} of every setting, the task's options beside the common fields: config.json's form,
        which :meth:`of` reads."""
        common = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        return {**common, **{f.name: getattr(self.options, f.name) for f in dataclasses.fields(self.options)}}

    def _check_layers(self, hidden_lists):
        """Every per-layer list the right length (``hidden_lists``: how many lists of widths were given),
        and each layer's family able to hold its size."""
        sizes = self.layer_sizes()
        counts = {"posterior": len(self.posterior) if isinstance(self.posterior, tuple) else 1,
                  "hidden": hidden_lists}
        for name, count in counts.items():
            if count not in (1, len(sizes)):
                raise invalid(f"{name} gives {count} per-layer values for {len(sizes)} stochastic layer(s) "
                               f"(latent {' '.join(map(str, sizes))}): give one for every layer or one per layer")
        for i, (d, name, shape) in enumerate(zip(sizes, self.layer_posteriors(), self.layer_grid_shapes())):
            try:
                family = layer_family(name, d, {"grid_shape": shape}, i + 1 if len(sizes) > 1 else None)
            except ValueError as e:
                raise invalid(str(e)) from None
            if self.merge == "precision" and i < len(sizes) - 1 and not family.mergeable:
                raise invalid(f"stochastic layer {i + 1} ({name}): merge 'precision' needs a family with a precision "
                               f"merge below the top layer (diagonal, chain, grid, extgrid or full), not {name}")
