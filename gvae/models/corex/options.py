"""The settings only the task corex (the total-correlation autoencoder) reads: :class:`CorexOptions`,
``TrainConfig.options`` of its runs. Each field is a ``gvae train`` flag (its metadata as
:class:`gvae.training.config.TrainConfig`'s fields hold theirs); a run of another task leaves it at its
default."""
import dataclasses
import math

from ...training.config import check_settings, non_negative_float, non_negative_int, option, unit_indices


@dataclasses.dataclass
class CorexOptions:
    """The settings only the task corex (the total-correlation autoencoder) reads."""
    anchors: tuple = option((), "corex: the latent units (indices from 0) anchored by AnchorVAE's term lambda I(z_k; x) "
                            "(Gao et al. 2019): their marginal KL weighs 1 - lambda", parse=non_negative_int,
                            nargs="+", metavar="UNIT")
    anchor_weight: float = option(0.0, "corex: the anchors' weight lambda in [0, 1] (needs --anchors)",
                                  parse=non_negative_float, metavar="LAMBDA")

    def __post_init__(self):
        self.anchors = unit_indices("anchors", self.anchors)
        check_settings([(math.isfinite(self.anchor_weight) and 0 <= self.anchor_weight <= 1,
                         "anchor_weight must lie in [0, 1]")])
