"""The settings only the tasks of binary latent units (sbn, darn, sbndef, poissondef) read:
:class:`BinaryOptions`, ``TrainConfig.options`` of its runs. Each field is a ``gvae train`` flag (its metadata
as :class:`gvae.training.config.TrainConfig`'s fields hold theirs); a run of another task leaves it at its
default."""
import dataclasses

from ...training.config import check_settings, option


@dataclasses.dataclass
class BinaryOptions:
    """The settings only the tasks of binary latent units (sbn, darn, sbndef, poissondef) read."""
    estimator: str = option("vimco", "sbn: the score-function gradient of the binary units: vimco (the bound over "
                            "--iw-samples K >= 2 with leave-one-out signals), nvil (the ELBO, one sample, with a "
                            "learned input-dependent baseline) or taylor (the ELBO, one sample, DARN's first-order "
                            "Taylor signals)", choices=["vimco", "nvil", "taylor"])

    def __post_init__(self):
        check_settings([(self.estimator in ("vimco", "nvil", "taylor"),
                         "estimator must be 'vimco', 'nvil' or 'taylor'")])
