"""Run folders as the evaluation, sampling, plotting and analysis commands read them: the model a
configuration describes, the trained parameters of a run, and the one way to open a run (:func:`open_run`),
with its test set prepared as the run evaluates it.

A run folder (docs/reference/api.md, section 5) holds ``config.json``, ``metrics.jsonl``, ``checkpoint.npz`` and
``summary.json``; see :mod:`gvae.training.trainer` for the writer."""
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from ..io.mnist import load_mnist
from ..kernels import generator, to_device, to_host
from ..model import VAE
from ..model.params import FlatParams
from . import checkpoint, rundir
from .batching import fixed_eval_sets
from .tasks import task_class
from .validation import standard_normal


def build_model(config, n_in):
    """The model a configuration describes, for n_in observed units: its task's
    (:meth:`gvae.training.tasks.Task.build_model`)."""
    return task_class(config.task).build_model(config, n_in)


def load_model(run_dir, which="best", device="cpu"):
    """(model, params dict, config) of a run folder, the parameters on ``device``; ``which`` is "best"
    (by validation) or "last". A folder without a trained run is a RunFolderError saying what it holds."""
    return _load_model(run_dir, which, device)[:3]


def _load_model(run_dir, which, device):
    """:func:`load_model`'s (model, params, config) and the checkpoint's meta."""
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    path = rundir.existing_run(run_dir) / "checkpoint.npz"
    arrays, meta = checkpoint.load(path)
    config = checkpoint.config_of(path, meta)
    model = build_model(config, meta["param_shapes"]["enc.W0"][0])
    host = arrays["best_params" if which == "best" else "params"]
    if {k: tuple(v) for k, v in meta["param_shapes"].items()} != model.param_shapes():  # checkpoint checked the rest
        raise ValueError(f"{path} holds parameters of another shape than its configuration describes")
    if not np.isfinite(host).all():
        raise ValueError(f"the {which} parameters in {path} hold NaN or inf (the run diverged); there is no "
                         "model to use: train again with a lower --lr")
    return model, FlatParams(model.param_shapes(), model.dtype, to_device(host, device)).views, config, meta


def shared_parameters(run_dir, model):
    """{name: host array} of the best parameters of the run in ``run_dir`` that ``model`` has too, in the
    model's dtype (``--init-from``). ValueError for a parameter of the same name and another shape, or for
    none in common, naming the run."""
    try:
        _, params, _ = load_model(run_dir, "best")
    except ValueError as e:  # no run there (RunFolderError), a damaged or diverged one
        raise ValueError(f"--init-from: {e}") from None
    shapes = model.param_shapes()
    for name, value in params.items():
        if name in shapes and tuple(value.shape) != tuple(shapes[name]):
            raise ValueError(f"--init-from {run_dir}: its parameter {name} is {tuple(value.shape)}, this model's "
                             f"{tuple(shapes[name])}: start from a run of the same sizes where both have it")
    shared = {name: np.asarray(to_host(value), dtype=model.dtype) for name, value in params.items() if name in shapes}
    if not shared:
        raise ValueError(f"--init-from {run_dir}: it has no parameter of this model's (names {sorted(shapes)[:3]} "
                         f"..., its {sorted(params)[:3]} ...)")
    return shared


class OpenRun(NamedTuple):
    """A trained run as the commands use it (:func:`open_run`): its folder, which parameters, the device
    they are on, the model, the parameters (name -> array) and the run's TrainConfig; with
    :meth:`with_test_set`, also its test images."""
    run_dir: Path  # the run folder
    which: str  # the parameters: "best" (by validation) or "last"
    device: str  # where the parameters live
    model: VAE
    params: dict  # name -> array, on ``device``
    config: Any  # the run's TrainConfig
    test_x: Optional[np.ndarray] = None  # (N, n) on the host: the test split prepared as the run evaluates it
    test_y: Optional[np.ndarray] = None  # (N,): its labels, None when the data set has none
    task: Any = None  # the run's Task where it is not read as a VAE (its reading's cannot_open), else None
    data_sha256: Optional[str] = None  # the fingerprint of the data it was trained on (None: not recorded)

    def with_test_set(self, data=None, limit=None):
        """This run with the first ``limit`` (all when None) images of the test split of ``data`` prepared
        once as the run evaluates them (the test set of :func:`fixed_eval_sets`), so that every command and
        picture of every run sees the same observations. ``data``: a data set as
        :func:`gvae.io.mnist.load_mnist` returns it, or the path to give it (None: MNIST from the cache)."""
        if not isinstance(data, dict):
            data = load_mnist(data)
        test = data["test"]
        labels = test[1][:limit] if len(test) > 1 else None
        if self.task is not None:  # the test observations as the task trained and summarised on them
            reading = self.task.reading
            rows = reading.eval_rows(reading.test_inputs(data))
            return self._replace(test_x=to_host(rows)[:limit], test_y=labels)
        return self._replace(test_x=fixed_eval_sets(data, self.model)[1][:limit], test_y=labels)


def open_run(run_dir, which="best", device="cpu", weighted=False, sampled=False):
    """The run in the folder ``run_dir`` with its ``which`` parameters on ``device`` (:func:`load_model`):
    the one way gvae eval, sample, plot, analyze and :func:`gvae.load` open a run. Returns an
    :class:`OpenRun`; ``.with_test_set(data)`` adds its test images. A run of a task that is not a VAE is
    refused (ValueError saying what it holds: its task's ``reading.cannot_open``), unless ``weighted`` (gvae
    eval) and the task gives its own log-weights (:meth:`gvae.training.tasks.Reading.log_weights`), or
    ``sampled`` (gvae sample) and its model draws from its prior (:attr:`gvae.training.tasks.Reading.draws_prior`):
    then the OpenRun's ``task`` is set."""
    model, params, config, meta = _load_model(run_dir, which, device)
    task = task_class(config.task)(config, model, device)
    reading = task.reading
    if reading.cannot_open is None:  # every user reads it by a VAE's passes (a ladder's are the same calls)
        task = None
    elif not ((weighted and reading.log_weights(params) is not None) or (sampled and reading.draws_prior)):
        raise ValueError(f"{run_dir} holds {reading.cannot_open}")
    return OpenRun(Path(run_dir), which, device, model, params, config, task=task,
                   data_sha256=meta.get("data_sha256"))


def prior_draws(model, params, n, seed, device="cpu", noise=standard_normal):
    """The decoder's output for n draws z ~ p(z) (a hierarchy: ancestral, from the top layer down) made
    from ``seed``, and the generator that made them (``gvae sample`` goes on with it to draw x ~ p(x|z)).
    ``gvae plot`` and ``gvae sample`` both draw here, so one seed gives one set of z. ``noise``: (rng, shape,
    dtype) -> the noise the model's ``prior_sample`` reads (a task's :attr:`gvae.training.tasks.Reading.noise`:
    uniforms for binary units). Returns (out, rng)."""
    rng = generator(device, seed)
    eps = noise(rng, (n, model.noise_size), model.dtype)
    return model.likelihood_params(params, model.prior_sample(params, eps)), rng

