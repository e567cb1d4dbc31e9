"""The task ``corex``: the total-correlation (CorEx) autoencoder (:mod:`gvae.models.corex.model`; Gao et al. 2019),
a one-layer VAE trained on CorEx's bound, the reconstruction minus the marginals' KL terms and the
posterior's own total correlation (the ELBO), with the anchors of AnchorVAE (``--anchors UNIT ...
--anchor-weight LAMBDA``: those units' KL terms weigh 1 - lambda). The model is a VAE, so gvae eval, sample,
plot and analyze read its runs.

Data, batches and the warm-up or beta on the rate are those of the task ``generate``
(:mod:`gvae.training.tasks.images`). Validation gives the ELBO (the run's health) and CorEx's bound
(``valid_corex``, the score that picks the best epoch); the test summary has both, the reconstruction, the
rate (the weighted marginals' KL terms and the TC), the unweighted sum of the marginals' KL terms, the
posterior's own total correlation TC(q(z|x)), and each unit's mean marginal KL (:class:`CorexReport`)."""
import functools

import numpy as np

from ...kernels import array_module, generator, to_device, to_host
from .model import corex_loss, corex_parts, unit_weights
from .options import CorexOptions
from ...training.batching import EVAL_SEED
from ...training.tasks import images
from ...training.tasks.base import Settings, Task, changed_flags, one_bound, register_task, require
from ...training.tasks.report import Report

# Observation models whose p(x|z) factorises over the pixels, as CorEx's bound on sum_i I(x_i; z) needs.
FACTORISED = ("bernoulli", "gaussian", "logitnormal")


def check_corex(config):
    """One stochastic layer; a likelihood that factorises over the pixels; CorEx's bound alone (no IWAE,
    target rate, MMD or alpha) with closed-form KL terms; anchors inside the code and an anchor weight
    exactly when there are anchors."""
    d = config.layer_sizes()[0]
    anchors = config.options.anchors
    inside = all(k < d for k in anchors) and len(set(anchors)) == len(anchors)
    require([(len(config.layer_sizes()) == 1, "task corex has one stochastic layer: give one --latent size"),
             (config.likelihood in FACTORISED, f"task corex needs a likelihood that factorises over the pixels "
                                               f"({', '.join(FACTORISED)}), got {config.likelihood}"),
             (one_bound(config), "task corex trains CorEx's bound: use it without --iw-samples, --target-rate, "
                                 "--mmd or --alpha"),
             (not changed_flags(config, ("kl",)), "task corex takes each marginal's KL in closed form: leave --kl "
                                                  "at analytic"),
             (inside, f"--anchors must be distinct units of the code, 0..{d - 1}, got "
                      f"{' '.join(map(str, config.options.anchors))}"),
             (bool(config.options.anchors) == (config.options.anchor_weight > 0),
              "--anchors and --anchor-weight go together: anchored units need a weight lambda > 0, and a weight "
              "needs --anchors")])


class CorexReport(Report):
    """The report of a CorEx autoencoder ``task``: CorEx's bound and the ELBO's terms, the ELBO as the health
    number, CorEx's bound as the score."""
    reported = ("bound", "elbo", "rec", "kl", "tc")
    health_name, health_label = "valid_elbo", "validation ELBO"
    score_label = "validation CorEx bound"

    def train_row(self, means):
        """``train_corex`` (CorEx's bound), ``train_elbo``, ``train_rec``, ``train_kl`` (the weighted rate),
        ``train_tc`` (TC(q(z|x)), inside the rate), nats of the data; ``train_bound`` is CorEx's bound too."""
        corex, elbo, rec, rate, tc = means
        offset = self.task.model.likelihood.nats_offset()
        return {"train_corex": corex + offset, "train_bound": corex + offset, "train_elbo": elbo + offset,
                "train_rec": rec + offset, "train_kl": rate, "train_tc": tc}

    def terms(self, params, x, batch_size=500):
        """Means over the rows of x with the noise of EVAL_SEED, host floats: CorEx's bound, the ELBO, rec,
        the rate, the marginals' unweighted sum, TC(q(z|x)), and each unit's mean marginal KL (a list)."""
        model, rng, xp = self.task.model, generator(self.task.device, EVAL_SEED), array_module(x)
        sums = xp.zeros(2, dtype=np.float64)  # rec, kl
        units = xp.zeros(model.sizes[0], dtype=np.float64)
        for lo in range(0, len(x), batch_size):
            xb = x[lo:lo + batch_size]
            eps = rng.standard_normal((1, len(xb), model.noise_size), dtype=model.dtype)
            rec, kls, kl = corex_parts(model, params, xb, eps)
            sums += xp.stack([rec.astype(np.float64).sum(), kl.astype(np.float64).sum()])
            units += kls.astype(np.float64).sum(axis=0)
        (rec, kl), unit_kl = to_host(sums) / len(x), to_host(units) / len(x)
        marginal = float(unit_kl.sum())
        rate = float(unit_kl @ self.task.host_weights) + kl - marginal
        offset = model.likelihood.nats_offset()
        return {"corex": rec - rate + offset, "elbo": rec - kl + offset, "rec": rec + offset, "rate": rate,
                "marginal_kl": marginal, "tc": kl - marginal, "unit_kl": [float(v) for v in unit_kl]}

    def validate(self, params, valid):
        """``valid_elbo`` (the health) and ``valid_corex`` (the score), nats per image."""
        t = self.terms(params, valid[0])
        return {"valid_elbo": t["elbo"], "valid_corex": t["corex"]}

    def score(self, valid):
        return valid["valid_corex"]

    def test_summary(self, params, test, best_valid):
        """``test_corex``, ``test_elbo``, ``test_rec``, ``test_rate`` (the weighted marginals' KL terms plus
        the TC), ``test_marginal_kl`` (the marginals' unweighted sum), ``test_tc``, ``test_unit_kl`` (d,), the
        anchors, and ``best_valid_corex``."""
        t, options = self.terms(params, test[0]), self.task.config.options
        return {"task": self.task.name, **{f"test_{k}": v for k, v in t.items()}, "anchors": list(options.anchors),
                "anchor_weight": options.anchor_weight, "best_valid_corex": best_valid}

    def epoch_line(self, row):
        return (f"train CorEx {row['train_corex']:.3f}  valid CorEx {row['valid_corex']:.3f}  valid ELBO "
                f"{row['valid_elbo']:.3f} nats/image")

    def result_line(self, summary):
        return (f"test CorEx bound {summary['test_corex']:.3f} nats, ELBO {summary['test_elbo']:.3f}, TC(q(z|x)) "
                f"{summary['test_tc']:.3f}")


@register_task("corex")
class Corex(Task):
    """The CorEx autoencoder: the loss is :func:`corex_loss` with the unit weights of the run's anchors."""
    settings = Settings(about="the total-correlation (CorEx) autoencoder (Gao et al. 2019): the reconstruction minus "
                              "each latent unit's marginal KL and the posterior's total correlation (--anchors UNIT "
                              "... --anchor-weight LAMBDA: AnchorVAE, the anchors' KL weighed 1 - LAMBDA)",
                        Options=CorexOptions, binarizes=True, check=check_corex)
    loss = staticmethod(corex_loss)
    build_model = staticmethod(images.build_vae)
    inputs, on_device, batches = images.inputs, images.on_device, images.batches
    report = functools.cached_property(CorexReport)

    def __init__(self, config, model, device):
        super().__init__(config, model, device)
        options = config.options
        self.host_weights = unit_weights(model.sizes[0], options.anchors, options.anchor_weight)  # float64
        self.weights = to_device(self.host_weights.astype(model.dtype), device)

    def step_args(self, batch, rng, kl_weight):
        """The posterior's noise (S samples per image) from ``rng``, the unit weights, the warm-up weight."""
        (x,) = batch
        eps = rng.standard_normal((self.config.samples, len(x), self.model.noise_size), dtype=self.model.dtype)
        return self.step_inputs(x=x, eps=eps, weights=self.weights, kl="analytic", kl_weight=kl_weight)
