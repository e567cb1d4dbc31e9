"""The settings only the task gammadef (the sparse gamma DEF) reads: :class:`GammaDefOptions`,
``TrainConfig.options`` of its runs. Each field is a ``gvae train`` flag (its metadata as
:class:`gvae.training.config.TrainConfig`'s fields hold theirs); a run of another task leaves it at its
default."""
import dataclasses

from ...training.config import option


@dataclasses.dataclass
class GammaDefOptions:
    """The settings only the task gammadef (the sparse gamma DEF) reads."""
    def_weights: str = option("point", "gammadef: the generative weights: point (estimates) or gamma (random as in "
                              "Ranganath et al. 2015: the prior Gamma(0.1, 0.3) per weight and a mean-field gamma "
                              "posterior, inferred with the codes, their KL over the training set's size)",
                              choices=["point", "gamma"])
