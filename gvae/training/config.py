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
from ..model.bayes import WEIGHT_POSTERIORS
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


def _invalid(message):
    return ValueError(f"invalid training configuration: {message}")


def _unit_indices(name, value):
    """A sequence of unit indices (ints >= 0) as a tuple; the error names ``name`` otherwise."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") or not all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 0 for k in value):
        raise _invalid(f"{name} must be a list of unit indices (integers >= 0), got {value!r}")
    return tuple(int(k) for k in value)


def _one_or_many(name, value, kind):
    """One value, or a sequence of them as a tuple (a sequence of one: that value, so a one-layer
    configuration reads as it always did)."""
    if not isinstance(value, (list, tuple)):
        return kind(value)
    items = tuple(kind(v) for v in value)
    if not items:
        raise _invalid(f"{name} needs at least one value")
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
            raise _invalid(f"hidden {' '.join(map(str, value))} has an empty list of widths beside a "
                           f"'{LAYER_SEPARATOR}'; expected e.g. --hidden 200 200 {LAYER_SEPARATOR} 100 100")
        value = groups
    try:
        return layer_widths(value)
    except ValueError as e:
        raise _invalid(str(e)) from None


def _grid_pairs(value):
    """--grid-shape as given (R C numbers, or nested pairs) -> None, one pair (R, C), or a tuple of pairs."""
    if value is None:
        return None
    flat = [int(v) for item in value for v in (item if isinstance(item, (list, tuple)) else (item,))]
    if not flat or len(flat) % 2:
        raise _invalid(f"grid_shape takes pairs R C, one per layer whose family is on a lattice; got "
                       f"{len(flat)} numbers")
    pairs = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
    return pairs[0] if len(pairs) == 1 else pairs


def _option(default, help, **cli):
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


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``config.json``."""
    task: str = _option("generate", "what the run learns: " + "; ".join(f"{name}, {task.about}"
                                                                       for name, task in TASKS.items())
                        + " (--model NAME is the same flag)",
                        choices=list(TASKS), aliases=("model",))
    classes: int = _option(10, "classify: the number of classes C; every label must lie in 0..C-1",
                           parse=positive_int, metavar="C")
    input_range: str = _option("unit", "classify: what the encoder reads: unit, the intensities x in [0, 1]; signed, "
                               "2x - 1 in [-1, 1] (Alemi et al.'s code), in every split",
                               choices=["unit", "signed"])
    scale_offset: float = _option(0.0, "classify, diagonal posterior: sigma = softplus(rho - S) + floor (Alemi et "
                                  "al.'s code: S = 5), made by starting the encoder's scale biases S lower than "
                                  "--init draws them, which Adam cannot tell from an offset in the function",
                                  parse=non_negative_float, metavar="S")
    train_on: str = _option("train", "classify: the images trained on: train, the training split; train+valid, "
                            "the training and validation splits together (MNIST's 60,000, as Alemi et al.), "
                            "which needs --test-params last: the validation numbers are then of training images",
                            choices=["train", "train+valid"])
    private: int = _option(0, "vcca: the private code's units per view (VCCA-private, Wang et al. 2016); 0: plain "
                           "VCCA, one shared code", parse=non_negative_int, metavar="P")
    view_weight: float = _option(1.0, "vcca: the weight W on view 2's log-likelihood in the loss (1: the paper's bound, "
                                 "which is what is reported either way; W > 1 tempers view 2's likelihood)",
                                 parse=positive_loss_weight, metavar="W")
    private_weight: float = _option(1.0, "vcca: the weight on the private codes' KL terms in the loss (with --private; "
                                    "1: the paper's bound, which is what is reported either way)",
                                    parse=positive_loss_weight, metavar="W")
    private_weight2: float = _option(None, "vcca: the weight on view 2's private code's KL term alone (with --private; "
                                     "default: --private-weight's), so that view 1's and view 2's private codes can "
                                     "cost differently", parse=positive_loss_weight, metavar="W")
    dropout: float = _option(0.0, "vcca: dropout's rate on every network's hidden units in training (inverted "
                             "dropout, Srivastava et al. 2014; the paper's networks use it; 0: none)",
                             parse=non_negative_float, metavar="P")
    input_dropout: float = _option(0.0, "vcca: dropout's rate on the encoders' inputs in training (as Wang et "
                                   "al.'s own code; the views the decoders reconstruct stay whole; 0: none)",
                                   parse=non_negative_float, metavar="P")
    code_dropout: float = _option(0.0, "vcca: dropout's rate on the codes entering the decoders in training (as "
                                  "Wang et al.'s own code, which drops the input of every layer; 0: none)",
                                  parse=non_negative_float, metavar="P")
    view2_likelihood: str = _option("bernoulli", "vcca: view 2's likelihood: bernoulli; diagonal-gaussian, a mean "
                                    "and a variance per pixel from view 2's decoder (softplus + 1e-4); or "
                                    "pixel-gaussian, the mean from the decoder and a learned variance per pixel "
                                    "1e-6 + exp(v), shared by all pairs, as Wang et al.'s own code models noisy "
                                    "MNIST's view 2; view 1's is Bernoulli either way",
                                    choices=["bernoulli", "diagonal-gaussian", "pixel-gaussian"])
    decoder_draws: str = _option("shared", "vcca: the draws of the shared code the decoders read: shared, both "
                                 "decode the same --samples draws; own, each decoder its own --samples draws "
                                 "(and, with dropout, its own masks per draw), as Wang et al.'s own code",
                                 choices=["shared", "own"])
    mi_target: float = _option(None, "mae: the mutual information M (nats) between x and z that the generative model "
                               "is held at (the Mutual Autoencoder, Phuong et al. 2018); default: none, which --task mae refuses",
                               parse=non_negative_float, metavar="M")
    mi_weight: float = _option(1.0, "mae: the weight C of the information's penalty C |I - M| in the loss",
                               parse=loss_weight, metavar="C")
    estimator: str = _option("vimco", "sbn: the score-function gradient of the binary units: vimco (the bound over "
                             "--iw-samples K >= 2 with leave-one-out signals), nvil (the ELBO, one sample, with a "
                             "learned input-dependent baseline) or taylor (the ELBO, one sample, DARN's first-order "
                             "Taylor signals)", choices=["vimco", "nvil", "taylor"])
    def_weights: str = _option("point", "gammadef: the generative weights: point (estimates) or gamma (random as in "
                               "Ranganath et al. 2015: the prior Gamma(0.1, 0.3) per weight and a mean-field gamma "
                               "posterior, inferred with the codes, their KL over the training set's size)",
                               choices=["point", "gamma"])
    anchors: tuple = _option((), "corex: the latent units (indices from 0) anchored by AnchorVAE's term lambda I(z_k; x) "
                             "(Gao et al. 2019): their marginal KL weighs 1 - lambda", parse=non_negative_int,
                             nargs="+", metavar="UNIT")
    anchor_weight: float = _option(0.0, "corex: the anchors' weight lambda in [0, 1] (needs --anchors)",
                                   parse=non_negative_float, metavar="LAMBDA")
    weight_prior_scale: float = _option(1.0, "fullvb: the scale s of the decoder weights' prior N(0, s^2)",
                                        parse=positive_float, metavar="S")
    weight_posterior: str = _option("diagonal", "fullvb: the Gaussian posterior of the decoder's weights: diagonal, "
                                    "or each output unit's incoming weights with a banded precision over its inputs "
                                    "(chain, grid, extgrid; the biases stay diagonal)", choices=list(WEIGHT_POSTERIORS))
    posterior: object = _option("diagonal", "posterior family of q(z|x): one name for every stochastic layer, "
                                "or one per layer, bottom first (" + ", ".join(sorted(FAMILIES)) + ")",
                                choices=sorted(FAMILIES), nargs="+", metavar="NAME")
    grid_shape: object = _option(None, "lattice R x C of the latent units of a grid/extgrid layer: one pair "
                                 "per layer whose family is on a lattice, bottom first (default: the most "
                                 "square R x C of each)", parse=positive_int, nargs="+", metavar="R C")
    latent: object = _option(16, "latent units of each stochastic layer, bottom first (one number: one "
                             "layer; --latent 100 50: the IWAE paper's two layers)", parse=positive_int,
                             nargs="+", metavar="D")
    hidden: tuple = _option((500, 500), "hidden widths of each stochastic layer's encoder, whose decoder "
                            f"mirrors them: one list for every layer, or one per layer, bottom first, "
                            f"separated by '{LAYER_SEPARATOR}' (--hidden 200 200 {LAYER_SEPARATOR} 100 100)",
                            parse=hidden_width, nargs="+", metavar="H")
    inference: str = _option("bottom-up", "order of a hierarchy's posterior pass: bottom-up q(z1|x) q(z2|z1) "
                             "... (the IWAE paper's) or top-down q(zL|x) ... q(z1|z2, x) (the Ladder VAE's), "
                             "where each lower layer's KL term is closed form", choices=list(INFERENCE))
    merge: str = _option("learned", "top-down inference: how z(l+1) enters q(zl|.): learned, the encoder's "
                         "head plus z(l+1) times a learned weight; precision, the Ladder VAE's precision-weighted "
                         "merge of the encoder's Gaussian with p(zl|z(l+1)) (diagonal, chain, grid, extgrid, full; "
                         "banded families through a banded Cholesky factor, O(d w^2) for the largest offset w)",
                         choices=list(MERGES))
    activation: str = _option("elu", "hidden-layer activation",
                              choices=sorted(set(ACTIVATIONS) - {"linear"}))
    init: str = _option("uniform", "initialisation of the networks: uniform, W and b ~ U(+-1/sqrt(fan_in)) "
                        "(PyTorch's nn.Linear), with a Bernoulli decoder's last bias at the logits of the mean "
                        "training image; he, He normal before rectifiers, Glorot uniform before the output "
                        "layers, zero biases (gvae's former default); glorot, Glorot uniform W ~ "
                        "U(+-sqrt(6/(fan_in + fan_out))) everywhere, zero biases (TensorFlow's layers); "
                        "uniform-0.05, W and b ~ U(-0.05, 0.05) (Wang et al.'s VCCA code)", choices=sorted(INITS))
    init_from: str = _option(None, "start every parameter that the run in folder RUN also has (the same name and "
                             "shape) at RUN's best parameters, the others as --init draws them; Adam starts afresh "
                             "(fine-tuning; a model grown from a trained one, as a DARN given its autoregressive "
                             "visible layer; default: none)", metavar="RUN")
    likelihood: str = _option("bernoulli", "observation model p(x|z)", choices=sorted(LIKELIHOODS))
    psi: str = _option("global", "gaussian likelihood: one learned variance per pixel, or one per data "
                       "point from the decoder", choices=["global", "decoder"])
    pixel_factor: str = _option("decoder", "logitnormal likelihoods: the precision factor over pixels from "
                                "the decoder, or one learned factor", choices=["decoder", "global"])
    squash: float = _option(1e-6, "continuous likelihoods: dequantised pixels are squashed into "
                            "(LAMBDA, 1 - LAMBDA)", parse=positive_float, metavar="LAMBDA")
    binarization: str = _option("dynamic", "binary pixels of the training images: dynamic, drawn afresh every "
                                "epoch; static, drawn once with a fixed seed, the same for every run (the statically "
                                "binarised MNIST protocol); the validation and test images are drawn once either "
                                "way", choices=["dynamic", "static"])
    epochs: int = _option(10, "passes over the training images", parse=positive_int, metavar="E")
    batch_size: int = _option(100, "training images per Adam step", parse=positive_int, metavar="B")
    lr: float = _option(1e-3, "Adam learning rate (per step)", parse=positive_float, metavar="LR")
    kl: str = _option("analytic", "KL term in closed form (SGVB-B) or by Monte Carlo (SGVB-A)",
                      choices=["analytic", "mc"])
    warmup: float = _option(0.0, "raise the KL weight linearly from 0 to 1 over this many epochs",
                            parse=non_negative_float, metavar="EPOCHS")
    beta: float = _option(1.0, "weight B of the rate in the loss D + B R, with R = KL(q(z|x) || p(z)) and D = "
                          "-E_q log p(x|z) (the beta-VAE; 1: the ELBO; times the warm-up's weight); with --task "
                          "classify, the VIB's beta: the loss is B R - E_q log q(y|z) (the paper's MNIST model: "
                          "1e-3)",
                          parse=loss_weight, metavar="B")
    target_rate: float = _option(None, "train on D + |S - R| instead, R the batch's mean rate in nats (Alemi "
                                 "et al., 'Fixing a broken ELBO'); default: no target", parse=loss_weight,
                                 metavar="S")
    alpha: float = _option(0.0, "InfoVAE's alpha: the rate's weight becomes (1 - A) times beta (Zhao et al.; "
                           "1 with --mmd: the MMD-VAE)", parse=non_negative_float, metavar="A")
    mmd: float = _option(0.0, "add W MMD^2 between the batch's posterior samples of the top layer and as many "
                         "draws of N(0, I) (InfoVAE; W = alpha + lambda - 1 in Zhao et al.'s terms; 0: none)",
                         parse=loss_weight, metavar="W")
    mmd_kernel: str = _option("imq", "the MMD's kernel: inverse multiquadratic C / (C + |a - b|^2) or Gaussian "
                              "exp(-|a - b|^2 / C), C = 2 d", choices=["imq", "rbf"])
    samples: int = _option(1, "Monte Carlo samples of z per image for the ELBO", parse=positive_int,
                           metavar="S")
    iw_samples: int = _option(1, "importance samples per image (K > 1: train on the IWAE bound)",
                              parse=positive_int, metavar="K")
    schedule: str = _option("constant", "learning rate: constant, --lr throughout; or iwae, the IWAE paper's "
                            "stages i = 0, ..., 7 of 3^i epochs each at --lr x 10^(-i/7) (3280 epochs; later "
                            "epochs stay at the last stage's rate)", choices=sorted(SCHEDULES))
    lr_decay: float = _option(1.0, "multiply the learning rate by R every --lr-decay-epochs epochs, on top of "
                              "--schedule (Alemi et al.'s deep VIB: 0.97 every 2 epochs; 1: no decay)",
                              parse=decay_factor, metavar="R")
    lr_decay_epochs: int = _option(1, "epochs between two steps of --lr-decay", parse=positive_int, metavar="N")
    adam_beta1: float = _option(0.9, "Adam's beta1, the decay of its running mean of the gradients (Alemi et al. "
                                "train the deep VIB with 0.5)", parse=fraction, metavar="B1")
    polyak: float = _option(0.0, "Polyak averaging: after every step a <- D a + (1 - D) theta, bias-corrected as "
                            "Adam's moments are, and the average is what is validated, tested and kept as the best "
                            "model (Alemi et al.'s deep VIB: 0.999; 0: none)", parse=fraction, metavar="D")
    seed: int = _option(0, "seed of the initialisation, the data order, the binarisation and the noise",
                        parse=non_negative_int, metavar="S")
    limit: int = _option(None, "use only the first N training images (default: all)", parse=positive_int,
                         metavar="N")
    clip_norm: float = _option(None, "clip the global gradient norm to C (default: no clipping)",
                               parse=positive_float, metavar="C")
    max_bad_steps: int = _option(20, "stop after N steps in a row with a non-finite loss or gradient",
                                 parse=positive_int, metavar="N")
    test_params: str = _option("best", "the parameters the run's test summary measures: best, the epoch's with the "
                               "best validation score; last, the last epoch's (with --polyak, its average), as a "
                               "paper that trains a fixed budget without early stopping reports",
                               choices=["best", "last"])
    patience: int = _option(None, "stop early when the validation ELBO (classify: the validation error) "
                            "has not improved for N epochs (default: never)", parse=positive_int, metavar="N")
    dtype: str = _option("float32", "floating-point type of parameters and computation",
                         choices=["float32", "float64"])

    def __post_init__(self):
        self.latent = _one_or_many("latent", self.latent, int)
        self.posterior = _one_or_many("posterior", self.posterior, str)
        self.grid_shape = _grid_pairs(self.grid_shape)
        self.anchors = _unit_indices("anchors", self.anchors)
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
                  (self.mi_target is None or (math.isfinite(self.mi_target) and self.mi_target >= 0),
                   "mi_target must be a finite number >= 0"),
                  (math.isfinite(self.mi_weight) and self.mi_weight >= 0, "mi_weight must be a finite number >= 0"),
                  (math.isfinite(self.view_weight) and self.view_weight > 0, "view_weight must be a finite number > 0"),
                  (math.isfinite(self.dropout) and 0 <= self.dropout < 1, "dropout must lie in [0, 1)"),
                  (math.isfinite(self.input_dropout) and 0 <= self.input_dropout < 1,
                   "input_dropout must lie in [0, 1)"),
                  (math.isfinite(self.code_dropout) and 0 <= self.code_dropout < 1, "code_dropout must lie in [0, 1)"),
                  (math.isfinite(self.scale_offset) and self.scale_offset >= 0,
                   "scale_offset must be a finite number >= 0"),
                  (math.isfinite(self.private_weight) and self.private_weight > 0,
                   "private_weight must be a finite number > 0"),
                  (self.private_weight2 is None or (math.isfinite(self.private_weight2) and self.private_weight2 > 0),
                   "private_weight2 must be a finite number > 0"),
                  (math.isfinite(self.anchor_weight) and 0 <= self.anchor_weight <= 1,
                   "anchor_weight must lie in [0, 1]"),
                  (self.estimator in ("vimco", "nvil", "taylor"), "estimator must be 'vimco', 'nvil' or 'taylor'"),
                  (math.isfinite(self.weight_prior_scale) and self.weight_prior_scale > 0,
                   "weight_prior_scale must be a finite number > 0"),
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
        for ok, msg in checks:
            if not ok:
                raise _invalid(msg)
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
            raise _invalid(f"a grid shape applies only to the grid and extgrid families, not "
                           f"{', '.join(sorted(set(names)))}")
        if len(pairs) != len(on_lattice):
            raise _invalid(f"grid_shape gives {len(pairs)} pair(s) R C for {len(on_lattice)} layer(s) on a lattice "
                           f"(layers {', '.join(str(i + 1) for i in on_lattice)}): give one pair per such layer, "
                           "bottom first")
        for i, pair in zip(on_lattice, pairs):
            shapes[i] = pair
        return tuple(shapes)

    def _check_loss_weights(self):
        """The loss's weights and targets (the fields declared with :data:`LOSS_WEIGHTS`) and the weights'
        prior scale within what training in the run's dtype holds."""
        most = largest_rate_control(self.dtype)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("parse") in LOSS_WEIGHTS and value is not None and value > most:
                raise _invalid(f"{f.name} {value:g} is beyond {self.dtype} training: {f.name} must be at most "
                               f"{most:g} with dtype {self.dtype}, as every weight and target of the loss (beyond "
                               "it the training steps overflow)")
        # The prior N(0, s^2) weighs each weight's mu^2 by 1 / (2 s^2): that weight is held to the same bound,
        # and s^2 to it too (s = 1e308 overflowed s^2 even in float64).
        low, high = most ** -0.5, most ** 0.5
        if not low <= self.weight_prior_scale <= high:
            raise _invalid(f"weight_prior_scale {self.weight_prior_scale:g} is beyond {self.dtype} training: it must "
                           f"lie in [{low:.3g}, {high:.3g}] with dtype {self.dtype} (beyond it s^2 or 1 / s^2 "
                           "overflows the training steps)")

    def _check_task(self):
        """A registered task (:mod:`gvae.training.tasks`), the settings that only other tasks read left at
        their defaults, and the rest checked by the task (:meth:`Task.check_config`)."""
        try:
            task = task_class(self.task)
        except ValueError as e:
            raise _invalid(str(e)) from None
        defaults = field_defaults(self)
        if self.binarization != defaults["binarization"] and not task.binarizes:
            raise _invalid(f"binarization applies to the tasks that binarise images, not --task {self.task}")
        for name in sorted({name for other in TASKS.values() for name in other.options} - set(task.options)):
            if getattr(self, name) != defaults[name]:
                owners = " or ".join(other.name for other in TASKS.values() if name in other.options)
                raise _invalid(f"{name} applies to --task {owners} only")
        try:
            task.check_config(self)
        except ValueError as e:
            raise _invalid(str(e)) from None

    def _check_layers(self, hidden_lists):
        """Every per-layer list the right length (``hidden_lists``: how many lists of widths were given),
        and each layer's family able to hold its size."""
        sizes = self.layer_sizes()
        counts = {"posterior": len(self.posterior) if isinstance(self.posterior, tuple) else 1,
                  "hidden": hidden_lists}
        for name, count in counts.items():
            if count not in (1, len(sizes)):
                raise _invalid(f"{name} gives {count} per-layer values for {len(sizes)} stochastic layer(s) "
                               f"(latent {' '.join(map(str, sizes))}): give one for every layer or one per layer")
        for i, (d, name, shape) in enumerate(zip(sizes, self.layer_posteriors(), self.layer_grid_shapes())):
            try:
                family = layer_family(name, d, {"grid_shape": shape}, i + 1 if len(sizes) > 1 else None)
            except ValueError as e:
                raise _invalid(str(e)) from None
            if self.merge == "precision" and i < len(sizes) - 1 and not family.mergeable:
                raise _invalid(f"stochastic layer {i + 1} ({name}): merge 'precision' needs a family with a precision "
                               f"merge below the top layer (diagonal, chain, grid, extgrid or full), not {name}")
