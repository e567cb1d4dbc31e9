"""What a run trains, as the training loop sees it (:class:`Task`), and the registry in which
``TrainConfig.task`` names it (:func:`register_task`, :func:`task_class`).

The loop (:class:`gvae.training.trainer.Trainer`) builds the task's model, takes its data, draws each
epoch's batches, differentiates its loss, averages the numbers the loss reports, validates, keeps the
best epoch by the task's score, checks the run's health against the untrained model and writes the test
summary without knowing which task runs: each of those is a method here. A task is a subclass of
:class:`Task` in a module that registers it under its name: ``generate`` in :mod:`.generate`, each
literature model in its folder of :mod:`gvae.models`, whose import registers them all.
docs/howto/adding_a_model.md is the recipe for another."""
import abc
import collections
import dataclasses
import functools
import inspect

import numpy as np

from ...kernels import to_device
from ..batching import batches
from ..validation import bits_per_dim, standard_normal

SPLITS = ("train", "valid", "test")
# The settings of a VAE's observation model p(x|z) (:class:`gvae.model.likelihoods`), which other tasks
# leave at their defaults.
LIKELIHOOD_SETTINGS = ("likelihood", "psi", "pixel_factor", "squash")
TASKS = {}  # name -> Task subclass, in the order the modules registered them (generate first)


def register_task(name):
    """A class decorator: the :class:`Task` subclass it decorates is the task ``name`` (``TrainConfig.task``,
    ``gvae train --task NAME``), and its ``name`` attribute says so. ValueError for a name taken."""
    def register(cls):
        if name in TASKS:
            raise ValueError(f"task {name!r} is registered twice: by {TASKS[name].__qualname__} and "
                             f"{cls.__qualname__}")
        cls.name = name
        TASKS[name] = cls
        return cls
    return register


def require(checks):
    """Raise ValueError with the message of the first ``(ok, message)`` pair of ``checks`` that is not ok:
    a task's :meth:`Task.check_config`."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def field_defaults(config):
    """{name: default} of every field of the dataclass ``config`` (a default factory's value for a list)."""
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(config)}


def changed_flags(config, names):
    """The command-line flags ("--pixel-factor", ...) of the settings ``names`` that ``config`` changes
    from their defaults."""
    defaults = field_defaults(config)
    return ["--" + name.replace("_", "-") for name in names if getattr(config, name) != defaults[name]]


def read_by_weights(what, bound="ELBO"):
    """The ``cannot_open`` of a task whose runs gvae eval reads by their own log-weights (:meth:`Task.log_weights`)
    and gvae sample by its model's prior draws (:attr:`Task.draws_prior`), but plot and analyze cannot: ``what``
    its runs hold ("a DARN (--task darn)"), ``bound`` what its summary's test bound is."""
    return (f"{what}, which gvae plot and analyze do not read (gvae sample draws from its prior): its test {bound} "
            "and a log p(x) estimate are in its summary.json, and gvae eval estimates its log p(x) on the whole test set")


def one_bound(config):
    """Whether ``config`` trains a task's own bound alone: no IWAE, target rate, MMD or alpha."""
    return config.iw_samples == 1 and config.target_rate is None and config.mmd == 0 and config.alpha == 0


@functools.lru_cache(maxsize=None)
def step_record(loss):
    """The named record of the inputs of one step of ``loss``: a NamedTuple class whose fields are the
    parameters of ``loss`` after (params, model), with their defaults; the loop calls
    ``loss(params, model, *record)``, so a field named wrongly or missing is a TypeError when the record is
    made, not an argument in the wrong place."""
    params = list(inspect.signature(loss).parameters.values())[2:]
    defaults = [p.default for p in params if p.default is not inspect.Parameter.empty]
    return collections.namedtuple(f"{loss.__name__}_inputs", [p.name for p in params], defaults=defaults)


@dataclasses.dataclass
class NoOptions:
    """The options of a task that reads no setting of its own (:attr:`Task.Options`)."""


def task_class(name):
    """The :class:`Task` subclass registered as ``name``; ValueError naming the registered ones otherwise
    (the literature models register when :mod:`gvae.models` is imported)."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {name!r} (import gvae.models to register the "
                         "literature models, or the package of your own)")
    return TASKS[name]


class Task(abc.ABC):
    """One run's objective and data as the loop uses them, for ``config`` (its TrainConfig), ``model`` (as
    :meth:`build_model` made it) and ``device``.

    A batch is a tuple of device arrays of one length B along the first axis, the step's inputs (x; or
    x and the labels y), the images x first. :meth:`step_args` makes the step's inputs, a named record
    (:meth:`step_inputs`); the loss is called as ``loss(params, model, *record)`` and returns
    ``(loss, aux)``: a scalar to minimise and the ``reported`` numbers, batch means, which
    the epoch averages over its images (:meth:`train_row` names them for the metrics row; the progress
    bar shows the first). Validation numbers are a dict (a metrics row's ``valid_*``); ``health_name``
    names the one whose collapse below the untrained model's is divergence, :meth:`score` (higher is
    better) picks the best epoch and stops a run early. The methods marked abstract are what each task must
    give: a subclass without one of them cannot be made (a TypeError naming it)."""
    name = None                 # set by register_task
    about = ""                  # what ``gvae train --help`` says the task learns, after its name
    Options = NoOptions         # the dataclass of the settings only this task reads (``TrainConfig.options``);
                                # its fields' metadata describe their gvae train flags, as TrainConfig's do
    binarizes = False           # whether its training images are binarised (--binarization applies)
    cannot_open = None          # why gvae sample, plot, analyze (and eval, without log_weights) refuse its runs;
                                # None: they are VAEs
    draws_prior = False         # with cannot_open: gvae sample reads its runs all the same, the model drawing
                                # codes from its generative model (prior_sample, likelihood_params) with :attr:`noise`
    posterior_family = True     # whether --posterior names the run's posterior (not for binary, gamma or count units)
    reported = ()               # the names of the loss's aux numbers, in order
    health_name = None          # the validation number whose collapse is divergence ...
    health_label = None         # ... in words ("validation ELBO")
    score_label = None          # what :meth:`score` measures, in words

    noise = staticmethod(standard_normal)  # the noise of one pass of the model, (rng, shape, dtype) -> array
    row_name = "image"          # what one row of :meth:`eval_rows` is, as gvae eval reports it

    def __init__(self, config, model, device):
        self.config, self.model, self.device = config, model, device

    def log_weights(self, params):
        """The task's own log-weights, by which ``gvae eval`` estimates log p(x) of a run it cannot read as a
        VAE (:class:`gvae.evaluation.task_weights.TaskWeights`): a function (x (B, n), noise (K, B,
        noise_size) drawn by :attr:`noise`) -> the K draws' log p(x, z) - log q(z|x) (K, B); x the rows of
        :meth:`eval_rows`. gvae eval reads them only where :attr:`cannot_open` is set (it reads a VAE's run as
        a model). None (the default) for a task it cannot evaluate."""
        return None

    def eval_rows(self, split):
        """The rows x of :meth:`log_weights` for one split's inputs as :meth:`on_device` gives them (a tuple):
        its first array, the images."""
        return split[0]

    def nats_offset(self):
        """What gvae eval adds to the log-weights to make nats of the data: the likelihood's
        (:meth:`gvae.model.likelihoods.Likelihood.nats_offset`)."""
        return self.model.likelihood.nats_offset()

    def bits_per_dim(self, nats):
        """gvae eval's bits per dimension of the estimates ``nats`` (name -> nats per row), as a VAE's
        (:func:`gvae.training.validation.bits_per_dim`)."""
        return bits_per_dim(self.model, nats)

    @classmethod
    def check_config(cls, config):
        """Raise ValueError saying which settings of ``config`` the task cannot train (nothing by default)."""

    @classmethod
    @abc.abstractmethod
    def build_model(cls, config, n_in):
        """The model ``config`` describes for inputs of ``n_in`` units; its first encoder weight is named
        ``enc.W0``, shape (n_in, ...), from which :func:`gvae.training.runs.load_model` reads n_in."""

    @staticmethod
    @abc.abstractmethod
    def loss(params, model, *args):
        """``(loss, aux)`` of a batch: what the step differentiates, and the ``reported`` batch means."""

    @abc.abstractmethod
    def inputs(self, data):
        """{split: tuple of host arrays}: the step inputs of each split of ``data`` ({split: (x, y)} as
        :func:`gvae.io.mnist.load_mnist` returns it), checked (ValueError naming the split), as given (the
        loop cuts the training split to ``config.limit``). They are what a run's data fingerprint hashes."""

    def on_device(self, inputs):
        """The host ``inputs`` ({split: tuple}) as the loop keeps them on the device: the images as
        contiguous arrays of the model's dtype, the other inputs as they are."""
        return {split: (to_device(np.ascontiguousarray(arrays[0], dtype=self.model.dtype), self.device),
                        *(to_device(a, self.device) for a in arrays[1:]))
                for split, arrays in inputs.items()}

    def test_inputs(self, data):
        """The test split's inputs as :meth:`on_device` gives them (a tuple), for reading a trained run
        (:meth:`gvae.training.runs.OpenRun.with_test_set`); a task whose inputs cost much to build builds
        the test split's alone."""
        return self.on_device(self.inputs(data))["test"]

    def batches(self, train, batch_size, rng):
        """An epoch's batches of the training inputs ``train`` (a tuple of device arrays), drawn from the
        device's generator ``rng``: by default every row once, in the shuffled order of
        :func:`gvae.training.batching.batches`."""
        return (tuple(a[idx] for a in train) for idx in batches(len(train[0]), batch_size, rng))

    @abc.abstractmethod
    def step_args(self, batch, rng, kl_weight):
        """The inputs of :attr:`loss` after (params, model) for ``batch``, a named record
        (:meth:`step_inputs`), with its noise drawn from ``rng`` and the rate weighted by ``kl_weight``
        (:meth:`Trainer.kl_weight`)."""

    def step_inputs(self, **inputs):
        """The record of :attr:`loss`'s inputs ``inputs`` (name -> value; a name left out takes the loss's
        default): :func:`step_record`."""
        return step_record(self.loss)(**inputs)

    @abc.abstractmethod
    def train_row(self, means):
        """The metrics row's training numbers ({name: float}) from the epoch's means of ``reported``."""

    @abc.abstractmethod
    def validate(self, params, valid):
        """The metrics row's validation numbers ({name: host float}) of ``params`` on the validation
        inputs ``valid`` (a tuple of device arrays), with fixed noise."""

    def score(self, valid):
        """The number that picks the best epoch, the higher the better, from :meth:`validate`'s dict: by
        default the health number."""
        return valid[self.health_name]

    @abc.abstractmethod
    def test_summary(self, params, test, best_valid):
        """The summary's task numbers ({name: JSON value}): those of ``params`` (the best epoch's) on the
        test inputs ``test``, and the best score ``best_valid`` as the summary states it."""

    @abc.abstractmethod
    def epoch_line(self, row):
        """The numbers of the metrics ``row`` that gvae train prints after an epoch, as text."""

    @abc.abstractmethod
    def result_line(self, summary):
        """The test result that gvae train prints at the end, as text, from the ``summary``."""
