"""How the commands that read a trained run (gvae eval, sample, plot, analyze, and :func:`gvae.load`) read
a task's runs: its :class:`Reading` (:attr:`gvae.training.tasks.Task.reading`). A VAE's run they read as a
model of its own (its decoder, prior and posteriors); a task whose model is not one says why
(``cannot_open``) and may give its own log-weights, by which gvae eval estimates log p(x), or draw from
its model's prior for gvae sample."""
import functools

from ..validation import bits_per_dim, standard_normal


def read_by_weights(what, bound="ELBO"):
    """The ``cannot_open`` of a task whose runs gvae eval reads by their own log-weights
    (:meth:`Reading.log_weights`) and gvae sample by its model's prior draws (:attr:`Reading.draws_prior`),
    but plot and analyze cannot: ``what`` its runs hold ("a DARN (--task darn)"), ``bound`` what its
    summary's test bound is."""
    return (f"{what}, which gvae plot and analyze do not read (gvae sample draws from its prior): its test {bound} "
            "and a log p(x) estimate are in its summary.json, and gvae eval estimates its log p(x) on the whole test set")


def summed(terms, model, params, x, noise):
    """The log-weights of the draws ``noise``: the sum of ``terms(model, params, x, noise)``, a tuple of
    (K, B) arrays (log p(x|z) and log p(z) - log q(z|x), say)."""
    return sum(terms(model, params, x, noise))


class Reading:
    """How a trained run of ``task`` is read. ``cannot_open``: why gvae sample, plot, analyze (and eval,
    without ``terms``) refuse its runs, None where they read them as a VAE's; ``terms``: (model, params, x,
    noise) -> the tuple of (K, B) arrays whose sum is the draws' log-weight log p(x, z) - log q(z|x), or
    None where there are none; ``noise``: the draw of one pass's noise, (rng, shape, dtype) -> array;
    ``draws_prior``: with ``cannot_open``, gvae sample reads the runs all the same, the model drawing codes
    from its generative model (``prior_sample``, ``likelihood_params``) with :attr:`noise`."""
    row_name = "image"  # what one row of :meth:`eval_rows` is, as gvae eval reports it

    def __init__(self, task, cannot_open=None, terms=None, noise=standard_normal, draws_prior=False):
        self.task, self.model = task, task.model
        self.cannot_open, self.terms, self.noise, self.draws_prior = cannot_open, terms, noise, draws_prior

    def log_weights(self, params):
        """The task's own log-weights, by which ``gvae eval`` estimates log p(x) of a run it cannot read as a
        VAE (:class:`gvae.evaluation.task_weights.TaskWeights`), and the task's summary its log p(x): a
        function (x (B, n), noise (K, B, noise_size) drawn by :attr:`noise`) -> the K draws' log p(x, z) -
        log q(z|x) (K, B); x the rows of :meth:`eval_rows`. None for a task without them."""
        return None if self.terms is None else functools.partial(summed, self.terms, self.model, params)

    def test_inputs(self, data):
        """The test split's inputs as the task's ``on_device`` gives them (a tuple), for reading a trained
        run (:meth:`gvae.training.runs.OpenRun.with_test_set`)."""
        return self.task.on_device(self.task.inputs(data))["test"]

    def eval_rows(self, split):
        """The rows x of :meth:`log_weights` for one split's inputs as the task's ``on_device`` gives them
        (a tuple): its first array, the images."""
        return split[0]

    def nats_offset(self):
        """What gvae eval adds to the log-weights to make nats of the data: the likelihood's
        (:meth:`gvae.model.likelihoods.Likelihood.nats_offset`)."""
        return self.model.likelihood.nats_offset()

    def bits_per_dim(self, nats):
        """gvae eval's bits per dimension of the estimates ``nats`` (name -> nats per row), as a VAE's
        (:func:`gvae.training.validation.bits_per_dim`)."""
        return bits_per_dim(self.model, nats)
