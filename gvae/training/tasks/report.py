"""What a run reports (:class:`Report`, a task's :attr:`gvae.training.tasks.Task.report`): the metrics rows'
training numbers from the epoch's means of the loss's aux numbers, the rows' validation numbers, the
number whose collapse is divergence, the score that picks the best epoch, the test summary, and the lines
gvae train prints. :class:`ElboReport` is the report of a model of the images trained on a bound of log
p(x), which the task ``generate`` and most literature models give with a few settings of its own; the
measures it takes (:func:`vae_elbo`, :func:`weights_elbo`, :func:`weights_log_px`) and its lines are
functions here, for the reports of other tasks to call."""
import abc

from ...kernels import generator
from ..batching import EVAL_SEED
from ..validation import LOG_PX_SAMPLES, bits_per_dim, dataset_elbo, log_px_estimate, log_px_summary


class Report(abc.ABC):
    """What a run of ``task`` reports. ``reported`` names the loss's aux numbers, in order (the progress bar
    shows the first); ``health_name`` is the validation number whose collapse below the untrained model's
    is divergence, ``health_label`` it in words ("validation ELBO"); ``score_label`` says in words what
    :meth:`score` measures. The methods marked abstract are what each report must give."""
    reported = ()
    health_name = None
    health_label = None
    score_label = None

    def __init__(self, task):
        self.task = task

    @abc.abstractmethod
    def train_row(self, means):
        """The metrics row's training numbers ({name: float}) from the epoch's means of ``reported`` (a
        float64 array)."""

    @abc.abstractmethod
    def validate(self, params, valid):
        """The metrics row's validation numbers ({name: host float}) of ``params`` on the validation
        inputs ``valid`` (a tuple of device arrays), with fixed noise; ``health_name`` among them."""

    def score(self, valid):
        """The number that picks the best epoch (kept as the best parameters, used by the test) and that
        ``--patience`` waits for, the higher the better, from :meth:`validate`'s dict: by default the
        health number."""
        return valid[self.health_name]

    @abc.abstractmethod
    def test_summary(self, params, test, best_valid):
        """The summary's task numbers ({name: JSON value}): those of ``params`` (the best epoch's) on the
        test inputs ``test``, and the best score ``best_valid`` as the summary states it; the loop appends
        its counts (``best_epoch``, ``epochs``, ``n_parameters``, ...)."""

    @abc.abstractmethod
    def epoch_line(self, row):
        """The numbers of the metrics ``row`` that gvae train prints after an epoch, as text."""

    @abc.abstractmethod
    def result_line(self, summary):
        """The test result that gvae train prints at the end, as text, from the ``summary``."""


def vae_elbo(task, params, x):
    """The mean ELBO of the observations x (nats per image) by the passes of ``task``'s VAE, one draw of z
    each with the noise of EVAL_SEED: a host float."""
    return dataset_elbo(task.model, params, x, generator(task.device, EVAL_SEED), kl=task.config.kl)


def weights_elbo(task, params, x, batch_size=500):
    """The mean log-weight of the rows x by ``task``'s own log-weights (:attr:`Task.reading`), one draw each
    with the noise of EVAL_SEED (:func:`log_px_estimate` with one sample: an ELBO), nats per image: a host
    float, one read."""
    reading, model = task.reading, task.model
    return log_px_estimate(reading.log_weights(params), model.noise_size, model.dtype, x,
                           generator(task.device, EVAL_SEED), samples=1, images=len(x), batch_size=batch_size,
                           noise=reading.noise)[0] + model.likelihood.nats_offset()


def weights_log_px(task, params, x, samples=LOG_PX_SAMPLES):
    """``test_log_px`` (L_K, K = ``samples``, on the first 1,000 rows of x, noise of EVAL_SEED),
    ``log_px_samples`` and ``log_px_images`` by ``task``'s own log-weights (:func:`log_px_summary`)."""
    reading = task.reading
    return log_px_summary(reading.log_weights(params), task.model, x, generator(task.device, EVAL_SEED),
                          noise=reading.noise, samples=samples)


def elbo_epoch_line(row):
    """The ELBO's line after an epoch: the training bound and the validation ELBO."""
    return f"train bound {row['train_bound']:.3f}  valid ELBO {row['valid_elbo']:.3f} nats/image"


def elbo_result_line(summary):
    """The ELBO's result: the test ELBO, with the images and parameters it is of."""
    return (f"test ELBO {summary['test_elbo']:.3f} nats (all {summary['n_test']:,} test images, one draw of z "
            f"each, the {summary['test_params']} epoch's parameters)")


def log_px_result_line(summary):
    """The ELBO's result and the summary's log p(x) estimate (:func:`weights_log_px`)."""
    return (f"{elbo_result_line(summary)}, log p(x) ~ {summary['test_log_px']:.3f} (L_{summary['log_px_samples']}"
            f", first {summary['log_px_images']} test images)")


class ElboReport(Report):
    """The report of ``task``, a model of the images trained on a bound of log p(x): the bound, its
    reconstruction and rate terms in the metrics rows (nats of the data), the validation ELBO as the health
    number and the score, the test ELBO in the summary.

    ``elbo``: (task, params, x) -> the mean bound of the rows x (nats per image, a host float) with the
    noise of EVAL_SEED (:func:`vae_elbo`, :func:`weights_elbo`); ``extra``: the loss's aux numbers after
    (bound, rec, kl), each reported as ``train_NAME``; ``log_px``: K of the summary's log p(x) estimate by
    the task's own log-weights (:func:`weights_log_px`; None: none); ``more``: (task, params, test) -> the
    summary's numbers after those (None: none); ``named``: whether the summary starts with the task's name
    (the task ``generate``'s, older than the tasks, does not); ``epoch_line``, ``result_line``: the lines as
    functions of the row and the summary (by default :func:`elbo_epoch_line`, and :func:`elbo_result_line`
    or with ``log_px`` :func:`log_px_result_line`)."""
    health_name, health_label = "valid_elbo", "validation ELBO"
    score_label = "validation ELBO"

    def __init__(self, task, elbo=vae_elbo, extra=(), log_px=None, more=None, named=True,
                 epoch_line=elbo_epoch_line, result_line=None):
        super().__init__(task)
        self.elbo, self.log_px, self.more, self.named = elbo, log_px, more, named
        self.reported = ("bound", "rec", "kl", *extra)
        self.epoch_text = epoch_line
        self.result_text = result_line or (elbo_result_line if log_px is None else log_px_result_line)

    def train_row(self, means):
        """``train_elbo`` (rec - kl), ``train_bound``, ``train_rec``, ``train_kl``, in nats of the data, then
        ``train_NAME`` of each extra number."""
        bound, rec, kl, *extra = means
        offset = self.task.model.likelihood.nats_offset()  # nats of the 8-bit data for continuous likelihoods
        bound, rec = bound + offset, rec + offset
        return {"train_elbo": rec - kl, "train_bound": bound, "train_rec": rec, "train_kl": kl,
                **{f"train_{name}": value for name, value in zip(self.reported[3:], extra)}}

    def validate(self, params, valid):
        """``valid_elbo``: the mean validation bound (nats per image)."""
        return {"valid_elbo": self.elbo(self.task, params, valid[0])}

    def test_summary(self, params, test, best_valid):
        """The task's name, ``test_elbo`` (with bits per dimension for a continuous likelihood),
        ``best_valid_elbo``, then the log p(x) estimate and the task's ``more``."""
        task = self.task
        elbo = self.elbo(task, params, test[0])
        return {**({"task": task.name} if self.named else {}), "test_elbo": elbo,
                **bits_per_dim(task.model, {"test_elbo": elbo}), "best_valid_elbo": best_valid,
                **({} if self.log_px is None else weights_log_px(task, params, test[0], self.log_px)),
                **({} if self.more is None else self.more(task, params, test))}

    def epoch_line(self, row):
        return self.epoch_text(row)

    def result_line(self, summary):
        return self.result_text(summary)
