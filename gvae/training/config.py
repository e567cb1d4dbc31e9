"""What defines a training run: :class:`TrainConfig` (saved as the run's ``config.json``) and the
learning-rate schedules it names.

Each field states, in its metadata, what the ``gvae train`` flag of the same name says in ``--help``
(``help``), how the command line parses it (``parse``: a function that raises ``ValueError`` with a
message, or ``choices``), and its ``metavar``/``nargs``: the command line is built from this class, so a
default is written once, here."""
import dataclasses
import math

from ..kernels.activations import ACTIVATIONS
from ..model import FAMILIES, INITS, LIKELIHOODS


def _number_parser(kind, noun, strict):
    """A parser of ``kind`` (int or float) from text that accepts finite values > 0 (``strict``) or >= 0,
    raising ValueError with a message that names the expected ``noun``."""
    def parse(text):
        try:
            v = kind(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected a {noun}, got {text!r}") from None
        if not (math.isfinite(v) and (v > 0 if strict else v >= 0)):
            raise ValueError(f"expected a {noun}, got {text}")
        return v
    parse.__name__ = noun.replace(" ", "_").replace("-", "_")
    return parse


positive_int = _number_parser(int, "positive integer", strict=True)
non_negative_int = _number_parser(int, "non-negative integer", strict=False)
positive_float = _number_parser(float, "positive finite number", strict=True)
non_negative_float = _number_parser(float, "non-negative finite number", strict=False)


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
IWAE_SCHEDULE_EPOCHS = sum(3 ** i for i in range(8))
# What may change when a run is resumed (each change is recorded in the metrics); everything else is the
# run's own configuration.
RESUMABLE = ("epochs", "lr", "max_bad_steps", "patience")
# Settings added after runs were first written, each with the value every run written before it used:
# a config.json without the field describes a run made that way (runs.config_of reads it so).
FORMER_DEFAULTS = {"init": "he"}


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``config.json``."""
    posterior: str = _option("diagonal", "posterior family of q(z|x)", choices=sorted(FAMILIES))
    grid_shape: tuple = _option(None, "lattice of the latent units for grid/extgrid (None: the most "
                                "square R x C)", parse=positive_int, nargs=2, metavar=("R", "C"))
    latent: int = _option(16, "latent dimension", parse=positive_int, metavar="D")
    hidden: tuple = _option((500, 500), "hidden layer widths of the encoder (the decoder mirrors them)",
                            parse=positive_int, nargs="+", metavar="H")
    activation: str = _option("elu", "hidden-layer activation",
                              choices=sorted(set(ACTIVATIONS) - {"linear"}))
    init: str = _option("uniform", "initialisation of the networks: uniform, W and b ~ U(+-1/sqrt(fan_in)) "
                        "(PyTorch's nn.Linear), with a Bernoulli decoder's last bias at the logits of the mean "
                        "training image; he, He normal before rectifiers, Glorot uniform before the output "
                        "layers, zero biases (gvae's former default)", choices=sorted(INITS))
    likelihood: str = _option("bernoulli", "observation model p(x|z)", choices=sorted(LIKELIHOODS))
    psi: str = _option("global", "gaussian likelihood: one learned variance per pixel, or one per data "
                       "point from the decoder", choices=["global", "decoder"])
    pixel_factor: str = _option("decoder", "logitnormal likelihoods: the precision factor over pixels from "
                                "the decoder, or one learned factor", choices=["decoder", "global"])
    squash: float = _option(1e-6, "continuous likelihoods: dequantised pixels are squashed into "
                            "(LAMBDA, 1 - LAMBDA)", parse=positive_float, metavar="LAMBDA")
    epochs: int = _option(10, "passes over the training images", parse=positive_int, metavar="E")
    batch_size: int = _option(100, "training images per Adam step", parse=positive_int, metavar="B")
    lr: float = _option(1e-3, "Adam learning rate (per step)", parse=positive_float, metavar="LR")
    kl: str = _option("analytic", "KL term in closed form (SGVB-B) or by Monte Carlo (SGVB-A)",
                      choices=["analytic", "mc"])
    warmup: float = _option(0.0, "raise the KL weight linearly from 0 to 1 over this many epochs",
                            parse=non_negative_float, metavar="EPOCHS")
    samples: int = _option(1, "Monte Carlo samples of z per image for the ELBO", parse=positive_int,
                           metavar="S")
    iw_samples: int = _option(1, "importance samples per image (K > 1: train on the IWAE bound)",
                              parse=positive_int, metavar="K")
    schedule: str = _option("constant", "learning rate: constant, or the IWAE paper's 3^i-epoch stages "
                            "at lr 10^(-i/7)", choices=sorted(SCHEDULES))
    seed: int = _option(0, "seed of the initialisation, the data order, the binarisation and the noise",
                        parse=non_negative_int, metavar="S")
    limit: int = _option(None, "use only the first N training images (None: all)", parse=positive_int,
                         metavar="N")
    clip_norm: float = _option(None, "clip the global gradient norm to C (None: no clipping)",
                               parse=positive_float, metavar="C")
    max_bad_steps: int = _option(20, "stop after N steps in a row with a non-finite loss or gradient",
                                 parse=positive_int, metavar="N")
    patience: int = _option(None, "stop early when the validation ELBO has not improved for N epochs "
                            "(None: never)", parse=positive_int, metavar="N")
    dtype: str = _option("float32", "floating-point type of parameters and computation",
                         choices=["float32", "float64"])

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.grid_shape is not None:
            self.grid_shape = tuple(int(v) for v in self.grid_shape)
        checks = [(self.latent >= 1, "latent must be >= 1"), (self.epochs >= 1, "epochs must be >= 1"),
                  (self.batch_size >= 1, "batch size must be >= 1"), (self.lr > 0, "lr must be > 0"),
                  (self.samples >= 1, "samples must be >= 1"), (self.warmup >= 0, "warmup must be >= 0"),
                  (self.iw_samples >= 1, "iw_samples must be >= 1"),
                  (self.samples == 1 or self.iw_samples == 1,
                   "use either Monte Carlo samples for the ELBO or importance samples, not both"),
                  (self.schedule in SCHEDULES, f"schedule must be one of {sorted(SCHEDULES)}"),
                  (self.max_bad_steps >= 1, "max_bad_steps must be >= 1"),
                  (isinstance(self.seed, int) and self.seed >= 0, "seed must be an int >= 0"),
                  (self.limit is None or self.limit >= 1, "limit must be >= 1"),
                  (self.patience is None or self.patience >= 1, "patience must be >= 1"),
                  (all(h >= 1 for h in self.hidden), "hidden sizes must be >= 1"),
                  (self.kl in ("analytic", "mc"), "kl must be 'analytic' or 'mc'"),
                  (self.init in INITS, f"init must be one of {sorted(INITS)}"),
                  (self.dtype in ("float32", "float64"), "dtype must be float32 or float64")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"invalid training configuration: {msg}")
