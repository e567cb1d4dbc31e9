"""What a run carries from one epoch to the next, and its checkpoint form.

:class:`TrainingState` is the whole of a run's progress: the parameters (one flat buffer on the run's
device, with named views), those of the best validation epoch, Adam's moments, the epoch count, the step
counters, the best and the untrained model's validation ELBO, and the metrics rows. A checkpoint
(:mod:`checkpoint`) is this state in host arrays plus a JSON meta: :meth:`TrainingState.to_checkpoint`
writes that form and :meth:`TrainingState.from_checkpoint` builds the state back from it, so a resumed run
continues from exactly the state the uninterrupted one had at the end of that epoch."""
import dataclasses
import math

import numpy as np

from ..kernels import to_device, to_host
from ..model.params import FlatParams
from .adam import Adam


@dataclasses.dataclass(eq=False)
class TrainingState:
    """A run's progress on one device. ``params`` (:class:`FlatParams`) and ``best_flat`` (a buffer of the
    same layout) live on the device, ``optimizer`` updates ``params.flat`` in place; ``epoch`` counts
    finished epochs; ``metrics`` holds one dict per finished epoch (the rows of metrics.jsonl)."""
    params: FlatParams
    best_flat: object
    optimizer: Adam
    epoch: int = 0
    skipped_steps: int = 0          # steps skipped for a non-finite loss or gradient, in all
    bad_steps: int = 0              # of those, how many in a row up to now
    best_valid: float = -math.inf   # the best validation ELBO so far, and its epoch
    best_epoch: int = 0
    initial_valid: float = None     # the untrained model's validation ELBO, the yardstick of divergence
    metrics: list = dataclasses.field(default_factory=list)

    @classmethod
    def new(cls, model, config, train_x, device):
        """The state before the first epoch: parameters initialised on the host from ``config.seed`` (the
        same model on every device; ``train_x``, host images, sets the decoder's output bias), then moved
        to ``device``; Adam with ``config.lr`` and ``config.clip_norm``."""
        params = model.new_params(np.random.default_rng(config.seed), train_x).on(device)
        return cls(params, params.flat.copy(), Adam(params.flat, lr=config.lr, clip_norm=config.clip_norm))

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
        optimizer = Adam(params.flat, lr=config.lr, clip_norm=config.clip_norm)
        optimizer.load_state(arrays)
        return cls(params, best_flat, optimizer,
                   epoch=meta["epoch"], skipped_steps=meta["skipped_steps"], bad_steps=meta.get("bad_steps", 0),
                   best_valid=meta["best_valid_elbo"], best_epoch=meta["best_epoch"],
                   initial_valid=meta.get("initial_valid_elbo"), metrics=list(metrics))

    def to_checkpoint(self, config, data_sha256):
        """(arrays, meta) for :func:`checkpoint.save`: host copies of the device's buffers, and the meta
        that :meth:`from_checkpoint` and :func:`checkpoint.config_of` read back."""
        arrays = {"params": to_host(self.params.flat), "best_params": to_host(self.best_flat), **self.optimizer.state()}
        meta = {"config": dataclasses.asdict(config), "epoch": self.epoch, "param_shapes": self.params.shapes,
                "skipped_steps": self.skipped_steps, "bad_steps": self.bad_steps, "best_valid_elbo": self.best_valid,
                "best_epoch": self.best_epoch, "initial_valid_elbo": self.initial_valid, "data_sha256": data_sha256}
        return arrays, meta
