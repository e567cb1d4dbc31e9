"""What a run carries from one epoch to the next, and its checkpoint form.

:class:`TrainingState` is the whole of a run's progress: the parameters (one flat buffer on the run's
device, with named views), those of the best validation epoch, Adam's moments, with Polyak averaging the
running average of the parameters, the epoch count, the step counters, the best score and the untrained
model's health number (the task's: a VAE's validation ELBO), and the metrics rows. A checkpoint
(:mod:`checkpoint`) is this state in host arrays plus a JSON meta: :meth:`TrainingState.to_checkpoint`
writes that form and :meth:`TrainingState.from_checkpoint` builds the state back from it, so a resumed run
continues from exactly the state the uninterrupted one had at the end of that epoch."""
import dataclasses
import math

import numpy as np

from ..kernels import array_module, to_device, to_host
from ..model.params import FlatParams
from .adam import Adam


@dataclasses.dataclass(eq=False)
class TrainingState:
    """A run's progress on one device. ``params`` (:class:`FlatParams`) and ``best_flat`` (a buffer of the
    same layout) live on the device, ``optimizer`` updates ``params.flat`` in place; ``epoch`` counts
    finished epochs; ``metrics`` holds one dict per finished epoch (the rows of metrics.jsonl).

    With Polyak averaging (``polyak`` D > 0), ``average`` (a buffer of the same layout) holds
    a_t = D a_(t-1) + (1 - D) theta_t from a_0 = 0 over the optimizer's t steps, and the parameters the run
    evaluates are a_t / (1 - D^t) (:meth:`evaluated_flat`): the average of the iterates with weights
    proportional to D^(t - s), whose weights sum to one from the first step (Adam's bias correction)."""
    params: FlatParams
    best_flat: object
    optimizer: Adam
    epoch: int = 0
    skipped_steps: int = 0          # steps skipped for a non-finite loss or gradient, in all
    bad_steps: int = 0              # of those, how many in a row up to now
    best_valid: float = -math.inf   # the best score so far (the task's report.score), and its epoch
    best_epoch: int = 0
    initial_valid: float = None     # the untrained model's health number, the yardstick of divergence
    metrics: list = dataclasses.field(default_factory=list)
    polyak: float = 0.0             # D, the average's decay (0: no average)
    average: object = None          # a_t on the device, or None without an average
    _scratch: object = None         # where evaluated_flat writes a_t / (1 - D^t)

    @classmethod
    def new(cls, model, config, train_x, device, start=None):
        """The state before the first epoch: parameters initialised on the host from ``config.seed`` (the
        same model on every device; ``train_x``, host images, sets the decoder's output bias), those named
        in ``start`` ({name: host array of the parameter's shape}) then set to its values, and all moved to
        ``device``; Adam with ``config.lr``, ``config.adam_beta1`` and ``config.clip_norm``; with
        ``config.polyak`` an average of zeros."""
        params = model.new_params(np.random.default_rng(config.seed), train_x)
        for name, value in (start or {}).items():
            params.views[name][...] = value
        params = params.on(device)
        average = array_module(params.flat).zeros_like(params.flat) if config.polyak > 0 else None
        return cls(params, params.flat.copy(), _adam(params.flat, config), polyak=config.polyak, average=average)

    @classmethod
    def from_checkpoint(cls, arrays, meta, model, config, device, metrics, where="the checkpoint"):
        """The state a checkpoint holds (``arrays``, ``meta`` as :func:`checkpoint.load` returns them with
        ``need=checkpoint.RESUME``), for ``model`` on ``device``, with the metrics rows of its epochs and
        Adam configured by ``config`` (a resumed run may change ``lr``). ValueError naming ``where`` when
        the parameters' shapes are not the model's."""
        shapes = model.param_shapes()
        if {k: tuple(v) for k, v in meta["param_shapes"].items()} != shapes:
            raise ValueError(f"{where} holds parameters of other shapes than its config.json")
        params = FlatParams(shapes, model.dtype).on(device)
        params.flat[...] = to_device(arrays["params"], device)
        best_flat = params.flat.copy()
        best_flat[...] = to_device(arrays["best_params"], device)
        optimizer = _adam(params.flat, config)
        optimizer.load_state(arrays)
        average = None
        if config.polyak > 0:
            if "average_params" not in arrays:
                raise ValueError(f"{where} lacks average_params, the running average of a run with Polyak averaging "
                                 "(polyak > 0): it is damaged or was not written by gvae train")
            average = params.flat.copy()
            average[...] = to_device(arrays["average_params"], device)
        return cls(params, best_flat, optimizer,
                   epoch=meta["epoch"], skipped_steps=meta["skipped_steps"], bad_steps=meta.get("bad_steps", 0),
                   best_valid=meta["best_valid_elbo"], best_epoch=meta["best_epoch"],
                   initial_valid=meta.get("initial_valid_elbo"), metrics=list(metrics), polyak=config.polyak,
                   average=average)

    def average_args(self):
        """The keywords that give the optimizer's step the average's update too (:meth:`Adam.update`,
        :func:`gvae.kernels.adam_update_guarded`): none without Polyak averaging."""
        return {} if self.average is None else {"average": self.average, "decay": self.polyak}

    def evaluated_flat(self):
        """The parameters the run validates, tests and keeps as its best, as a flat buffer on the device:
        ``params.flat`` itself, or with Polyak averaging the bias-corrected average (in a scratch buffer
        that the next call overwrites; ``params.flat`` before the first step)."""
        steps = self.optimizer.step
        if self.average is None or steps == 0:
            return self.params.flat
        if self._scratch is None:
            self._scratch = self.params.flat.copy()
        xp = array_module(self.average)
        xp.multiply(self.average, self.params.flat.dtype.type(1.0 / (1.0 - self.polyak ** steps)), out=self._scratch)
        return self._scratch

    def to_checkpoint(self, config, data_sha256):
        """(arrays, meta) for :func:`checkpoint.save`: host copies of the device's buffers, and the meta
        that :meth:`from_checkpoint` and :func:`checkpoint.config_of` read back (the best score and the
        health number under the names they had when only VAEs were trained: ``best_valid_elbo``,
        ``initial_valid_elbo``)."""
        arrays = {"params": to_host(self.params.flat), "best_params": to_host(self.best_flat), **self.optimizer.state()}
        if self.average is not None:
            arrays["average_params"] = to_host(self.average)
        meta = {"config": config.flat(), "epoch": self.epoch, "param_shapes": self.params.shapes,
                "skipped_steps": self.skipped_steps, "bad_steps": self.bad_steps, "best_valid_elbo": self.best_valid,
                "best_epoch": self.best_epoch, "initial_valid_elbo": self.initial_valid, "data_sha256": data_sha256}
        return arrays, meta


def _adam(flat, config):
    """Adam over ``flat`` with the configuration's rate, beta1 and clipping."""
    return Adam(flat, lr=config.lr, beta1=config.adam_beta1, clip_norm=config.clip_norm)
