"""The settings only the task vcca (deep variational CCA) reads: :class:`VccaOptions`, ``TrainConfig.options`` of
its runs. Each field is a ``gvae train`` flag (its metadata as :class:`gvae.training.config.TrainConfig`'s
fields hold theirs); a run of another task leaves it at its default."""
import dataclasses
import math

from ...training.config import check_settings, non_negative_float, non_negative_int, option, positive_loss_weight


@dataclasses.dataclass
class VccaOptions:
    """The settings only the task vcca (deep variational CCA) reads."""
    private: int = option(0, "vcca: the private code's units per view (VCCA-private, Wang et al. 2016); 0: plain "
                          "VCCA, one shared code", parse=non_negative_int, metavar="P")
    view_weight: float = option(1.0, "vcca: the weight W on view 2's log-likelihood in the loss (1: the paper's bound, "
                                "which is what is reported either way; W > 1 tempers view 2's likelihood)",
                                parse=positive_loss_weight, metavar="W")
    private_weight: float = option(1.0, "vcca: the weight on the private codes' KL terms in the loss (with --private; "
                                   "1: the paper's bound, which is what is reported either way)",
                                   parse=positive_loss_weight, metavar="W")
    private_weight2: float = option(None, "vcca: the weight on view 2's private code's KL term alone (with --private; "
                                    "default: --private-weight's), so that view 1's and view 2's private codes can "
                                    "cost differently", parse=positive_loss_weight, metavar="W")
    dropout: float = option(0.0, "vcca: dropout's rate on every network's hidden units in training (inverted "
                            "dropout, Srivastava et al. 2014; the paper's networks use it; 0: none)",
                            parse=non_negative_float, metavar="P")
    input_dropout: float = option(0.0, "vcca: dropout's rate on the encoders' inputs in training (as Wang et "
                                  "al.'s own code; the views the decoders reconstruct stay whole; 0: none)",
                                  parse=non_negative_float, metavar="P")
    code_dropout: float = option(0.0, "vcca: dropout's rate on the codes entering the decoders in training (as "
                                 "Wang et al.'s own code, which drops the input of every layer; 0: none)",
                                 parse=non_negative_float, metavar="P")
    view2_likelihood: str = option("bernoulli", "vcca: view 2's likelihood: bernoulli; diagonal-gaussian, a mean "
                                   "and a variance per pixel from view 2's decoder (softplus + 1e-4); or "
                                   "pixel-gaussian, the mean from the decoder and a learned variance per pixel "
                                   "1e-6 + exp(v), shared by all pairs, as Wang et al.'s own code models noisy "
                                   "MNIST's view 2; view 1's is Bernoulli either way",
                                   choices=["bernoulli", "diagonal-gaussian", "pixel-gaussian"])
    view2_mean: str = option("linear", "vcca: view 2's mean with --view2-likelihood pixel-gaussian: linear, its "
                             "decoder's output; or sigmoid, the output's sigmoid, in (0, 1), as Wang et al.'s own "
                             "code (its decoders end in a sigmoid)", choices=["linear", "sigmoid"])
    decoder_draws: str = option("shared", "vcca: the draws of the shared code the decoders read: shared, both "
                                "decode the same --samples draws; own, each decoder its own --samples draws "
                                "(and, with dropout, its own masks per draw), as Wang et al.'s own code",
                                choices=["shared", "own"])

    def __post_init__(self):
        check_settings([(math.isfinite(self.view_weight) and self.view_weight > 0, "view_weight must be a finite number > 0"),
                        (math.isfinite(self.private_weight) and self.private_weight > 0,
                         "private_weight must be a finite number > 0"),
                        (self.private_weight2 is None or (math.isfinite(self.private_weight2) and self.private_weight2 > 0),
                         "private_weight2 must be a finite number > 0"),
                        *((math.isfinite(rate) and 0 <= rate < 1, f"{name} must lie in [0, 1)")
                          for name, rate in (("dropout", self.dropout), ("input_dropout", self.input_dropout),
                                             ("code_dropout", self.code_dropout))),
                        *((getattr(self, name) in choices,
                           f"{name} must be one of {choices}, got {getattr(self, name)!r}")
                          for name, choices in _CHOICES.items())])


# The settings whose values are names, and the names each takes (as its flag's choices).
_CHOICES = {field.name: field.metadata["choices"] for field in dataclasses.fields(VccaOptions)
            if field.metadata.get("choices")}
