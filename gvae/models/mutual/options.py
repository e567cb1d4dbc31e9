"""The settings only the task mae (the Mutual Autoencoder) reads: :class:`MutualOptions`, ``TrainConfig.options``
of its runs. Each field is a ``gvae train`` flag (its metadata as :class:`gvae.training.config.TrainConfig`'s
fields hold theirs); a run of another task leaves it at its default."""
import dataclasses
import math

from ...training.config import check_settings, loss_weight, non_negative_float, option


@dataclasses.dataclass
class MutualOptions:
    """The settings only the task mae (the Mutual Autoencoder) reads."""
    mi_target: float = option(None, "mae: the mutual information M (nats) between x and z that the generative model "
                              "is held at (the Mutual Autoencoder, Phuong et al. 2018); default: none, which --task mae refuses",
                              parse=non_negative_float, metavar="M")
    mi_weight: float = option(1.0, "mae: the weight C of the information's penalty C |I - M| in the loss",
                              parse=loss_weight, metavar="C")

    def __post_init__(self):
        check_settings([(self.mi_target is None or (math.isfinite(self.mi_target) and self.mi_target >= 0),
                         "mi_target must be a finite number >= 0"),
                        (math.isfinite(self.mi_weight) and self.mi_weight >= 0,
                         "mi_weight must be a finite number >= 0")])
