"""The task ``vlae``: the variational ladder autoencoder (:mod:`gvae.model.ladder`; Zhao, Song, Ermon 2017),
codes at several depths of one generative network, trained on the objectives of the task ``generate``
(the ELBO, beta, warm-up, the IWAE bound, ...), which score any model of the objectives' interface.

Data, batches, validation and the best epoch are those of ``generate``. The test summary adds an
importance-sampled estimate of log p(x): the IWAE bound L_K with K = LOG_PX_SAMPLES samples of q on the first
LOG_PX_IMAGES test images, the estimate ``gvae eval --iw-samples K --limit N`` gives a VAE."""
import numpy as np

from ...kernels import generator, to_host
from ...model.ladder import VLAE
from ...model.objectives import iwae_bound
from ..batching import EVAL_SEED
from .base import changed_flags, register_task, require
from .generate import Generate, vae_arguments

LOG_PX_SAMPLES = 1000
LOG_PX_IMAGES = 1000
LOG_PX_BATCH = 10  # images a pass: 10,000 decoder rows


@register_task("vlae")
class Ladder(Generate):
    """The VLAE, trained on :func:`gvae.model.objectives.training_loss` as the VAE is."""
    about = ("the variational ladder autoencoder (Zhao et al. 2017): one code per --latent size, each inferred "
             "from features of its own depth and injected at that depth of one generative network")
    cannot_open = ("a variational ladder autoencoder (--task vlae), which gvae eval, sample, plot and analyze do not "
                   "read yet: its test ELBO and log p(x) estimate are in its summary.json; gvae.training.load_model "
                   "opens it")

    @classmethod
    def check_config(cls, config):
        """Every layer with hidden widths (its features feed the deeper codes); the inference order and
        merge of a hierarchy's posterior do not apply (each code is inferred from its features alone)."""
        changed = changed_flags(config, ("inference", "merge"))
        require([(all(config.layer_hidden()), "task vlae needs hidden widths for every layer: give --hidden"),
                 (not changed, "task vlae infers each code from the features of its depth: leave "
                               + ", ".join(changed) + " at the default")])

    @classmethod
    def build_model(cls, config, n_in):
        arguments = vae_arguments(config, n_in)
        for name in ("inference", "merge"):
            del arguments[name]
        return VLAE(**arguments)

    def test_summary(self, params, test, best_valid):
        """The generate task's numbers and ``test_log_px``: mean L_K (K = LOG_PX_SAMPLES) over the first
        LOG_PX_IMAGES test images (``log_px_images`` says how many), noise from EVAL_SEED."""
        rng, model, (x,) = generator(self.device, EVAL_SEED), self.model, test
        n = min(LOG_PX_IMAGES, len(x))
        total = 0.0
        for lo in range(0, n, LOG_PX_BATCH):
            xb = x[lo:min(lo + LOG_PX_BATCH, n)]
            eps = rng.standard_normal((LOG_PX_SAMPLES, len(xb), model.noise_size), dtype=model.dtype)
            total += float(to_host(iwae_bound(model, params, xb, eps).astype(np.float64).sum()))
        offset = model.likelihood.nats_offset()
        return {"task": self.name, **super().test_summary(params, test, best_valid),
                "test_log_px": total / n + offset, "log_px_samples": LOG_PX_SAMPLES, "log_px_images": n}

    def result_line(self, summary):
        return (f"{super().result_line(summary)}, log p(x) ~ {summary['test_log_px']:.3f} (L_{summary['log_px_samples']}"
                f", first {summary['log_px_images']} test images)")
