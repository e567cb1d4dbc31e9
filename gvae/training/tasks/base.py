"""What a run trains, as the training loop sees it (:class:`Task`), what a task says of the configuration
(:class:`Settings`), and the registry in which ``TrainConfig.task`` names it (:func:`register_task`,
:func:`task_class`).

The loop (:class:`gvae.training.trainer.Trainer`) builds the task's model, takes its inputs, draws each
epoch's batches and differentiates its loss on each step's named inputs without knowing which task runs:
each of those is a member of :class:`Task`. What a run reports (its metrics rows' numbers, its health, the
score that picks the best epoch, its test summary and console lines) is the task's :attr:`Task.report`
(:mod:`.report`), and how gvae eval, sample, plot and analyze read a trained run is its
:attr:`Task.reading` (:mod:`.reading`). A task derives from :class:`Task` alone and takes what it shares
with others as functions and small objects: the images' inputs of :mod:`.images`, the ELBO's report
(:class:`.report.ElboReport`), a model folder's own. It is registered under its name by its module:
``generate`` in :mod:`.generate`, each literature model in its folder of :mod:`gvae.models`, whose import
registers them all. docs/howto/adding_a_model.md is the recipe for another."""
import abc
import collections
import dataclasses
import functools
import inspect
from typing import Callable

import numpy as np

from ...kernels import to_device
from ..batching import batches
from .reading import Reading

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
    a task's check of a configuration (:attr:`Settings.check`)."""
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


def rows_on_device(inputs, dtype, device):
    """The host ``inputs`` ({split: tuple of arrays}) on ``device``: the first array of each split (the
    images) contiguous of ``dtype``, the other arrays as they are."""
    return {split: (to_device(np.ascontiguousarray(arrays[0], dtype=dtype), device),
                    *(to_device(a, device) for a in arrays[1:]))
            for split, arrays in inputs.items()}


@dataclasses.dataclass
class NoOptions:
    """The options of a task that reads no setting of its own (:attr:`Settings.Options`)."""


def accept(config):
    """The check of a task that trains every configuration TrainConfig admits: nothing to refuse."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a task says of the configuration, read from its class before any run of it exists (the
    command line's flags and --help, TrainConfig's checks, a run's title)."""
    about: str = ""               # what ``gvae train --help`` says the task learns, after its name
    Options: type = NoOptions     # the dataclass of the settings only this task reads (``TrainConfig.options``);
                                  # its fields' metadata describe their gvae train flags, as TrainConfig's do
    binarizes: bool = False       # whether its training images are binarised (--binarization applies)
    posterior_family: bool = True  # whether --posterior names the run's posterior (not for binary, gamma or
                                   # count units)
    check: Callable = accept      # config -> None; raises ValueError naming the settings the task cannot train


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
    ``(loss, aux)``: a scalar to minimise and the numbers the :attr:`report` names (``reported``), batch
    means, which the epoch averages over its images. The members marked abstract are what each task must
    give: a subclass without one of them cannot be made (a TypeError naming it)."""
    name = None                 # set by register_task
    settings = Settings()       # what the task says of the configuration (its class's: read before a run exists)

    def __init__(self, config, model, device):
        self.config, self.model, self.device = config, model, device

    @staticmethod
    @abc.abstractmethod
    def build_model(config, n_in):
        """The model ``config`` describes for inputs of ``n_in`` units; its first encoder weight is named
        ``enc.W0``, shape (n_in, ...), from which :func:`gvae.training.runs.load_model` reads n_in."""

    @staticmethod
    @abc.abstractmethod
    def loss(params, model, *args):
        """``(loss, aux)`` of a batch: what the step differentiates, and the reported batch means."""

    @abc.abstractmethod
    def inputs(self, data):
        """{split: tuple of host arrays}: the step inputs of each split of ``data`` ({split: (x, y)} as
        :func:`gvae.io.mnist.load_mnist` returns it), checked (ValueError naming the split), as given (the
        loop cuts the training split to ``config.limit``). They are what a run's data fingerprint hashes."""

    def on_device(self, inputs):
        """The host ``inputs`` ({split: tuple}) as the loop keeps them on the device: the images as
        contiguous arrays of the model's dtype, the other inputs as they are (:func:`rows_on_device`)."""
        return rows_on_device(inputs, self.model.dtype, self.device)

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

    @property
    @abc.abstractmethod
    def report(self):
        """What the run reports (a :class:`gvae.training.tasks.report.Report`): the metrics rows' training and
        validation numbers, the health number, the score that picks the best epoch, the test summary and
        the lines gvae train prints. A task gives it as a ``functools.cached_property``."""

    @functools.cached_property
    def reading(self):
        """How gvae eval, sample, plot and analyze read the task's trained runs (a :class:`Reading`): by
        default as a VAE's."""
        return Reading(self)
