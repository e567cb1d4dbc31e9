"""The settings only the task fullvb (variational Bayes over the decoder's weights) reads: :class:`BayesOptions`,
``TrainConfig.options`` of its runs. Each field is a ``gvae train`` flag (its metadata as
:class:`gvae.training.config.TrainConfig`'s fields hold theirs); a run of another task leaves it at its
default."""
import dataclasses
import math

from ...training.config import check_settings, option, positive_float
from .model import WEIGHT_POSTERIORS


@dataclasses.dataclass
class BayesOptions:
    """The settings only the task fullvb (variational Bayes over the decoder's weights) reads."""
    weight_prior_scale: float = option(1.0, "fullvb: the scale s of the decoder weights' prior N(0, s^2)",
                                       parse=positive_float, metavar="S")
    weight_posterior: str = option("diagonal", "fullvb: the Gaussian posterior of the decoder's weights: diagonal, "
                                   "or each output unit's incoming weights with a banded precision over its inputs "
                                   "(chain, grid, extgrid; the biases stay diagonal)", choices=list(WEIGHT_POSTERIORS))

    def __post_init__(self):
        check_settings([(math.isfinite(self.weight_prior_scale) and self.weight_prior_scale > 0,
                         "weight_prior_scale must be a finite number > 0")])
