"""The task ``vcca``: deep variational CCA (Wang, Yan, Lee, Livescu 2016, :mod:`gvae.models.vcca.model`) on noisy
MNIST, built from the run's MNIST (:func:`gvae.io.noisy_mnist.noisy_mnist`, with the fixed seed
NOISY_SEED so that every run sees the same pairs). ``--private P`` adds the private codes of
VCCA-private.

The inputs are the two views and the labels; the step models the views (the labels only ride along for
the test). Validation and test give the bound per pair (nats) with the noise of EVAL_SEED; the test
summary adds the paper's measurement, the error of a linear SVM on the mean of q(z|x1), fitted on the
training pairs with C chosen on the validation pairs, in two forms: one-vs-rest on standardised codes
(:func:`gvae.models.vcca.svm.linear_svm_error`) and the one-vs-one SVC of Wang et al.'s own code
(:func:`gvae.models.vcca.svm.pairwise_svm_error`). ``gvae eval`` estimates log p(x1, x2) of the test pairs
by the model's importance weights (:class:`PairReading`)."""
import functools
import importlib.util

import numpy as np

from ...io.noisy_mnist import noisy_mnist
from ...kernels import array_module, generator, to_device, to_host
from .model import VCCA, vcca_loss
from .options import VccaOptions
from ...training.batching import EVAL_SEED
from .svm import linear_svm_error, pairwise_svm_error
from ...training.tasks.base import (LIKELIHOOD_SETTINGS, Settings, Task, changed_flags, one_bound, register_task,
                                    require)
from ...training.tasks.reading import Reading
from ...training.tasks.report import Report

NOISY_SEED = 0  # the pairs, angles and noise of noisy MNIST, the same for every run
MOST_PRIVATE = 10_000


def check_vcca(config):
    """One stochastic layer, the bound alone (no IWAE, target rate, MMD or alpha), the Bernoulli likelihood,
    0 <= private <= MOST_PRIVATE, and scikit-learn installed for the test's SVM."""
    changed = changed_flags(config, LIKELIHOOD_SETTINGS)
    options = config.options
    require([(len(config.layer_sizes()) == 1, "task vcca has one shared code: give one --latent size"),
             (not changed, "task vcca models view 1 by a Bernoulli likelihood and view 2 by --view2-likelihood's: "
                           "leave " + ", ".join(changed) + " at the default"),
             (one_bound(config), "task vcca trains its bound: use it without --iw-samples, --target-rate, --mmd "
                                 "or --alpha"),
             (0 <= options.private <= MOST_PRIVATE, f"private must lie in 0..{MOST_PRIVATE}, got {options.private}"),
             (options.private > 0 or options.private_weight == 1, "--private-weight weighs the private codes' KL "
                                                                  "terms: give --private P"),
             (options.view2_mean == "linear" or options.view2_likelihood == "pixel-gaussian",
              f"--view2-mean {options.view2_mean} is the mean of a pixel-gaussian view 2: give --view2-likelihood "
              f"pixel-gaussian (not {options.view2_likelihood})"),
             (options.private > 0 or options.private_weight2 is None, "--private-weight2 weighs view 2's private "
                                                                      "code's KL term: give --private P"),
             (importlib.util.find_spec("sklearn") is not None,
              "task vcca measures its code with a linear SVM from scikit-learn, which is not installed: "
              "pip install 'gvae[eval]'")])


class VccaReport(Report):
    """The report of a VCCA ``task``: the bound per pair and its terms, the validation bound as the health
    number and the score, the test bound and the linear SVMs' errors on the shared code."""
    reported = ("bound", "rec", "kl")
    health_name, health_label = "valid_elbo", "validation bound"
    score_label = "validation bound"

    def train_row(self, means):
        """``train_elbo`` (the bound at weight 1), ``train_bound``, ``train_rec``, ``train_kl`` (nats)."""
        bound, rec, kl = means
        return {"train_elbo": rec - kl, "train_bound": bound, "train_rec": rec, "train_kl": kl}

    def bound(self, params, views, batch_size=500):
        """The mean bound per pair (nats) of the views (x1, x2), with the noise of EVAL_SEED: a host float."""
        task, (x1, x2) = self.task, views[:2]
        model, rng, xp = task.model, generator(task.device, EVAL_SEED), array_module(x1)
        total = xp.zeros((), dtype=np.float64)
        for lo in range(0, len(x1), batch_size):
            b1, b2 = x1[lo:lo + batch_size], x2[lo:lo + batch_size]
            eps = rng.standard_normal((1, len(b1), model.noise_size), dtype=model.dtype)
            rec, rate = model.terms(params, b1, b2, eps, task.config.kl)
            total += (rec - rate).astype(np.float64).sum()
        return float(to_host(total)) / len(x1)

    def validate(self, params, valid):
        """``valid_elbo``: the mean validation bound (nats per pair)."""
        return {"valid_elbo": self.bound(params, valid)}

    def codes(self, params, views, batch_size=500):
        """The mean of q(z|x1) of every pair, float64 host (N, latent)."""
        x1, model = views[0], self.task.model
        return np.concatenate([to_host(model.shared(params, x1[lo:lo + batch_size])[1]).astype(np.float64)
                               for lo in range(0, len(x1), batch_size)])

    def test_summary(self, params, test, best_valid):
        """The test bound, the test errors of two linear SVMs on the shared code's mean (fitted on the training
        pairs, C chosen on the validation pairs: one-vs-rest on standardised codes, and Wang et al.'s own
        code's one-vs-one SVC on the raw codes) and the best validation bound."""
        task, svm_sets = self.task, self.task.svm_sets
        sets = [(self.codes(params, views), np.asarray(views[2])) for views in (svm_sets["train"], svm_sets["valid"],
                                                                               test)]
        return {"task": task.name, "private": task.config.options.private, "test_elbo": self.bound(params, test),
                **linear_svm_error(*sets), **pairwise_svm_error(*sets), "best_valid_elbo": best_valid}

    def epoch_line(self, row):
        return f"train bound {row['train_bound']:.3f}  valid bound {row['valid_elbo']:.3f} nats/pair"

    def result_line(self, summary):
        return (f"test bound {summary['test_elbo']:.3f} nats, linear SVM test error "
                f"{100 * summary['svm_test_error']:.2f}% (one-vs-one, as Wang et al.'s code: "
                f"{100 * summary['svm_ovo_test_error']:.2f}%)")


def pair_log_weights(model, params, x, noise):
    """(x (B, n_in + n_in2): a pair's views side by side, :meth:`PairReading.eval_rows`; noise (K, B,
    noise_size)) -> the K draws' log p(x1, x2, codes) - log q(codes|.)
    (:meth:`gvae.models.vcca.model.VCCA.log_weights`)."""
    xp, n1 = array_module(x), model.n_in
    return model.log_weights(params, xp.ascontiguousarray(x[:, :n1]), xp.ascontiguousarray(x[:, n1:]), noise)


class PairReading(Reading):
    """How a VCCA's run is read: gvae eval by the model's log-weights of a pair's two views side by side, in
    the bound's own nats and without bits per dimension; gvae sample, plot and analyze refuse it."""
    row_name = "pair"

    def __init__(self, task):
        super().__init__(task, cannot_open="a VCCA (--task vcca), a model of two views that gvae sample, plot and "
                                           "analyze do not read: its test bound and SVM errors are in its "
                                           "summary.json, and gvae eval estimates its log p(x) of a pair, log p(x1, "
                                           "x2), on the whole test set")

    def log_weights(self, params):
        """The log-weights of a pair's views side by side (:func:`pair_log_weights`)."""
        return functools.partial(pair_log_weights, self.model, params)

    def test_inputs(self, data):
        """The test pairs alone (each split's pairs come from a generator of its own: the same pairs as the
        task's ``inputs`` builds), without rotating and pairing the other 60,000 images."""
        return self.task.on_device(noisy_mnist(data, NOISY_SEED, splits=("test",)))["test"]

    def eval_rows(self, split):
        """A pair's two views side by side, (N, n_in + n_in2)."""
        return array_module(split[0]).concatenate(split[:2], axis=1)

    def nats_offset(self):
        """0: the views' log-densities count as the bound counts them (the paper's units)."""
        return 0.0

    def bits_per_dim(self, nats):
        """No bits per dimension: the views are not dequantised intensities."""
        return {}


@register_task("vcca")
class Vcca(Task):
    """VCCA, or VCCA-private with ``config.options.private`` > 0 (:class:`gvae.models.vcca.model.VCCA`): the loss is
    :func:`vcca_loss`, its rate weighted by the trainer's ``kl_weight``, view 2's term by ``view_weight``."""
    settings = Settings(about="deep variational CCA (Wang et al. 2016) on noisy MNIST: a code shared by two views "
                              "inferred from view 1, a decoder per view (--private P: VCCA-private); its test summary "
                              "has the linear SVM's error on the shared code", Options=VccaOptions, check=check_vcca)
    loss = staticmethod(vcca_loss)
    report = functools.cached_property(VccaReport)
    reading = functools.cached_property(PairReading)

    @staticmethod
    def build_model(config, n_in):
        return VCCA(n_in, n_in, config.latent, config.layer_hidden()[0], config.activation, config.posterior,
                    config.options.private, np.dtype(config.dtype), {"grid_shape": config.layer_grid_shapes()[0]},
                    config.init, likelihood=("bernoulli", config.options.view2_likelihood),
                    decoder_draws=config.options.decoder_draws, view_mean=("linear", config.options.view2_mean))

    def inputs(self, data):
        """The two views of noisy MNIST and the labels of every split (ValueError naming a split without
        labels or with images that are not 28 x 28)."""
        return noisy_mnist(data, NOISY_SEED)

    def on_device(self, inputs):
        """Both views as contiguous arrays of the model's dtype on the device, the labels on the host; kept
        as :attr:`svm_sets` too, the sets the test's SVM is fitted and tuned on. ValueError, before any
        training, when the training pairs (as --limit cuts them) hold one class: the SVM has none to tell
        apart, and the run could not report its measurement."""
        if "train" in inputs:
            classes = np.unique(inputs["train"][2])
            if len(classes) < 2:
                kept = "" if self.config.limit is None else " that --limit keeps"
                raise ValueError(f"task vcca measures its code by a linear SVM fitted on the training pairs' "
                                 f"classes, and the {len(inputs['train'][2])} training images{kept} all have label "
                                 f"{classes[0]}; give data with two or more classes among them")
        dtype = self.model.dtype
        self.svm_sets = {split: (*(to_device(np.ascontiguousarray(v, dtype=dtype), self.device) for v in views), y)
                         for split, (*views, y) in inputs.items()}
        return self.svm_sets

    def batches(self, train, batch_size, rng):
        """Every pair once, in shuffled batches of the two views (the labels stay behind)."""
        return super().batches(train[:2], batch_size, rng)

    def step_args(self, batch, rng, kl_weight):
        """S = ``samples`` draws of the codes' noise per pair, from ``rng``; the rate's, view 2's and the
        private codes' weights (view 1's, view 2's); with ``dropout``, ``input_dropout`` or ``code_dropout``
        > 0 the dropout masks, drawn after the noise."""
        x1, x2 = batch
        cfg, opt = self.config, self.config.options
        eps = rng.standard_normal((cfg.samples, len(x1), self.model.noise_size), dtype=self.model.dtype)
        masks = (self.model.dropout_masks(rng, len(x1), opt.dropout, opt.input_dropout, opt.code_dropout, cfg.samples)
                 if opt.dropout or opt.input_dropout or opt.code_dropout else None)
        weight2 = opt.private_weight if opt.private_weight2 is None else opt.private_weight2
        return self.step_inputs(x1=x1, x2=x2, eps=eps, kl=cfg.kl, kl_weight=kl_weight, view_weight=opt.view_weight,
                                private_weight=(opt.private_weight, weight2), masks=masks)
