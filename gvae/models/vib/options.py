"""The settings only the task classify (the deep variational information bottleneck) reads:
:class:`ClassifyOptions`, ``TrainConfig.options`` of its runs. Each field is a ``gvae train`` flag (its
metadata as :class:`gvae.training.config.TrainConfig`'s fields hold theirs); a run of another task leaves it
at its default."""
import dataclasses
import math

from ...training.config import check_settings, non_negative_float, option, positive_int


@dataclasses.dataclass
class ClassifyOptions:
    """The settings only the task classify (the deep variational information bottleneck) reads."""
    classes: int = option(10, "classify: the number of classes C; every label must lie in 0..C-1",
                          parse=positive_int, metavar="C")
    input_range: str = option("unit", "classify: what the encoder reads: unit, the intensities x in [0, 1]; signed, "
                              "2x - 1 in [-1, 1] (Alemi et al.'s code), in every split",
                              choices=["unit", "signed"])
    scale_offset: float = option(0.0, "classify, diagonal posterior: sigma = softplus(rho - S) + floor (Alemi et "
                                 "al.'s code: S = 5), made by starting the encoder's scale biases S lower than "
                                 "--init draws them, which Adam cannot tell from an offset in the function",
                                 parse=non_negative_float, metavar="S")
    train_on: str = option("train", "classify: the images trained on: train, the training split; train+valid, "
                           "the training and validation splits together (MNIST's 60,000, as Alemi et al.), "
                           "which needs --test-params last: the validation numbers are then of training images",
                           choices=["train", "train+valid"])

    def __post_init__(self):
        check_settings([(math.isfinite(self.scale_offset) and self.scale_offset >= 0,
                         "scale_offset must be a finite number >= 0")])
