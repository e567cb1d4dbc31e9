"""The task ``classify``: the deep variational information bottleneck (Alemi et al. 2017,
:mod:`gvae.models.vib.model`), a softmax q(y|z) of the data set's labels through the stochastic code z, trained on
J = E log q(y|z) - beta R (:func:`gvae.models.vib.model.vib_loss`).

Its inputs are the images, raw intensities in [0, 1] (not binarised: nothing models the pixels; with
``input_range`` "signed" 2x - 1 in [-1, 1]), and their labels, checked (:func:`labels_of`); with
``train_on`` "train+valid" the training split is the training and validation images together. Validation
and test give the error of the averaged softmax's argmax, the rate and the objective with the paper's 12
samples per image (:func:`gvae.models.vib.scores.classifier_scores`); the best epoch is the one with the
lowest validation error (:class:`VibReport`)."""
import functools

import numpy as np

from ...kernels import generator
from .model import Classifier, vib_loss
from .options import ClassifyOptions
from .scores import TEST_SAMPLES, classifier_scores
from ...training.batching import EVAL_SEED
from ...training.tasks.base import (LIKELIHOOD_SETTINGS, SPLITS, Settings, Task, changed_flags, one_bound,
                                    register_task, require)
from ...training.tasks.reading import Reading
from ...training.tasks.report import Report


def labels_of(data, classes):
    """The labels of every split of ``data`` ({split: (x, y)}) as int64 host arrays, checked against
    ``classes``: a tuple (train, valid, test). ValueError naming the split when one has no labels, labels
    of another length than its images, non-integer labels or labels outside 0..classes-1."""
    out = []
    for split in SPLITS:
        part = data[split]
        y = part[1] if len(part) > 1 else None
        if y is None:
            raise ValueError(f"task classify needs labels, and the {split} split has none; give a data set with "
                             f"{split}_y (--data)")
        y = np.asarray(y)
        n = len(part[0])
        if y.shape != (n,):
            raise ValueError(f"the {split} labels have shape {y.shape}, expected ({n},): one per image")
        if y.dtype.kind not in "iu":
            raise ValueError(f"the {split} labels have dtype {y.dtype}, expected integer class labels")
        if n and (y.min() < 0 or y.max() >= classes):
            raise ValueError(f"the {split} labels run from {y.min()} to {y.max()}, outside 0..{classes - 1}; give "
                             f"--classes with the number of classes (the labels must be 0..C-1)")
        out.append(y.astype(np.int64))
    return tuple(out)


def check_classify(config):
    """One stochastic layer, the VIB objective alone (no IWAE, target rate, MMD or alpha), no observation
    model, at least two classes."""
    changed = changed_flags(config, LIKELIHOOD_SETTINGS)
    require([(config.options.classes >= 2, f"a classifier needs classes >= 2, got {config.options.classes}"),
             (len(config.layer_sizes()) == 1, "task classify has one stochastic layer: give one --latent size"),
             (not changed, "task classify has no observation model p(x|z): leave " + ", ".join(changed)
                           + " at the default"),
             (one_bound(config), "task classify trains E log q(y|z) - beta R: use it without --iw-samples, "
                                 "--target-rate, --mmd or --alpha"),
             (config.options.scale_offset == 0 or config.layer_posteriors()[0] == "diagonal",
              "--scale-offset shifts the diagonal posterior's scales: use it with --posterior diagonal"),
             (config.options.train_on == "train" or (config.test_params == "last" and config.patience is None),
              "--train-on train+valid trains on the validation images, which then pick no epoch: give "
              "--test-params last, without --patience")])


class VibReport(Report):
    """The report of the VIB's classifier ``task``: J, log q(y|z) and the rate in the metrics rows, the
    objective as the health number, the validation error as the score."""
    reported = ("objective", "log_lik", "rate")
    health_name, health_label = "valid_objective", "validation objective"
    score_label = "validation error"

    def train_row(self, means):
        """``train_objective`` (J), ``train_log_lik`` (mean log q(y|z)), ``train_rate`` (nats)."""
        objective, log_lik, rate = means
        return {"train_objective": objective, "train_log_lik": log_lik, "train_rate": rate}

    def scores(self, params, inputs):
        """:func:`classifier_scores` of ``params`` on the inputs (x, y), with the noise of EVAL_SEED."""
        x, y = inputs
        task = self.task
        return classifier_scores(task.model, params, x, y, generator(task.device, EVAL_SEED), task.config.beta)

    def validate(self, params, valid):
        """``valid_objective``, ``valid_error`` and ``valid_rate``, with 12 samples per image."""
        scores = self.scores(params, valid)
        return {"valid_objective": scores["objective"], "valid_error": scores["error"], "valid_rate": scores["rate"]}

    def score(self, valid):
        """The validation accuracy 1 - valid_error. Not the objective (the health number): it peaks early
        (epoch 18 of 50 on MNIST, 1.50% test error, against 1.42% at epoch 50) while the error still falls,
        its log q(y|z) spent on the few images the classifier gets confidently wrong."""
        return 1.0 - valid["valid_error"]

    def test_summary(self, params, test, best_valid):
        """The test error, rate, mean log q(y|z) and objective with 12 samples per image, beta, and the
        best validation error."""
        scores = self.scores(params, test)
        return {"task": self.task.name, "test_error": scores["error"], "test_rate": scores["rate"],
                "test_log_lik": scores["log_lik"], "test_objective": scores["objective"],
                "test_samples": TEST_SAMPLES, "beta": self.task.config.beta, "best_valid_error": 1.0 - best_valid}

    def epoch_line(self, row):
        return (f"train objective {row['train_objective']:.4f}  valid error {100 * row['valid_error']:.2f}%  "
                f"valid rate {row['valid_rate']:.2f} nats")

    def result_line(self, summary):
        return f"test error {100 * summary['test_error']:.2f}%, test rate {summary['test_rate']:.2f} nats"


@register_task("classify")
class Classify(Task):
    """The VIB's classifier (:class:`gvae.models.vib.model.Classifier`): the loss is :func:`vib_loss`, whose beta
    is the trainer's rate weight."""
    settings = Settings(about="the deep variational information bottleneck (Alemi et al. 2017), a softmax q(y|z) of "
                              "the data set's labels through the stochastic code z, trained on E log q(y|z) - beta R",
                        Options=ClassifyOptions, check=check_classify)
    loss = staticmethod(vib_loss)
    report = functools.cached_property(VibReport)

    @staticmethod
    def build_model(config, n_in):
        return Classifier(n_in, config.latent, config.layer_hidden()[0], config.options.classes, config.activation,
                          config.posterior, np.dtype(config.dtype), {"grid_shape": config.layer_grid_shapes()[0]},
                          config.init, config.options.scale_offset)

    def inputs(self, data):
        """The images of every split (2x - 1 with ``input_range`` "signed") and their labels
        (:func:`labels_of`); with ``train_on`` "train+valid" the training split followed by the validation
        split as the training inputs."""
        signed = self.config.options.input_range == "signed"
        out = {split: (2 * data[split][0] - 1 if signed else data[split][0], y)
               for split, y in zip(SPLITS, labels_of(data, self.config.options.classes))}
        if self.config.options.train_on == "train+valid":
            out["train"] = tuple(np.concatenate(pair) for pair in zip(out["train"], out["valid"]))
        return out

    def step_args(self, batch, rng, kl_weight):
        """S = ``samples`` draws of the posterior's noise per image; ``kl_weight`` is the VIB's beta."""
        x, y = batch
        eps = rng.standard_normal((self.config.samples, len(x), self.model.noise_size), dtype=self.model.dtype)
        return self.step_inputs(x=x, y=y, eps=eps, kl=self.config.kl, beta=kl_weight)

    @functools.cached_property
    def reading(self):
        return Reading(self, cannot_open="a classifier (--task classify), which has no decoder p(x|z) or prior to "
                                         "evaluate, sample, plot or analyse: its test error and rate are in its "
                                         "summary.json")
