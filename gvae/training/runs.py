"""Run folders as the evaluation, sampling, plotting and analysis commands read them: the model a
configuration describes, the trained parameters of a run, the fixed validation and test sets, and the one
way to open a run (:func:`open_run`).

A run folder (docs/api.md, section 5) holds ``config.json``, ``metrics.jsonl``, ``checkpoint.npz`` and
``summary.json``; see :mod:`gvae.training.trainer` for the writer."""
import math
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from ..io.mnist import load_mnist
from ..kernels import generator, to_device
from ..model import VAE
from ..model.vib import Classifier
from ..model.params import FlatParams
from . import checkpoint, rundir
from .batching import observations

# Validation and test sets are binarised once with this seed, so numbers compare across runs.
EVAL_SEED = 20140101


def fixed_eval_sets(data, model):
    """The validation and test sets prepared once (binarised or dequantised) with EVAL_SEED, on the host:
    the same observations for every run, every evaluation and every device (move them with to_device)."""
    rng = np.random.default_rng(EVAL_SEED)
    return tuple(observations(np.asarray(data[split][0], model.dtype), model.likelihood, rng)
                 for split in ("valid", "test"))


def build_model(config, n_in):
    """The model a configuration describes, for n_in observed units: the VAE, or with task "classify" the
    VIB's :class:`~gvae.model.vib.Classifier`."""
    if config.task == "classify":
        return Classifier(n_in, config.latent, config.layer_hidden()[0], config.classes, config.activation,
                          config.posterior, np.dtype(config.dtype), {"grid_shape": config.layer_grid_shapes()[0]},
                          config.init)
    lik_options = {"gaussian": {"psi": config.psi, "squash": config.squash},
                   "bernoulli": {}}.get(config.likelihood,
                                        {"factor": config.pixel_factor, "squash": config.squash})
    return VAE(n_in, config.layer_sizes(), config.layer_hidden(), config.activation, config.layer_posteriors(),
               config.likelihood, np.dtype(config.dtype),
               posterior_options=[{"grid_shape": shape} for shape in config.layer_grid_shapes()],
               likelihood_options=lik_options, inference=config.inference, init=config.init,
               merge=config.merge)


def load_model(run_dir, which="best", device="cpu"):
    """(model, params dict, config) of a run folder, the parameters on ``device``; ``which`` is "best"
    (by validation) or "last". A folder without a trained run is a RunFolderError saying what it holds."""
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
    return model, FlatParams(model.param_shapes(), model.dtype, to_device(host, device)).views, config


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

    def with_test_set(self, data=None, limit=None):
        """This run with the first ``limit`` (all when None) images of the test split of ``data`` prepared
        once as the run evaluates them (the test set of :func:`fixed_eval_sets`), so that every command and
        picture of every run sees the same observations. ``data``: a data set as
        :func:`gvae.io.mnist.load_mnist` returns it, or the path to give it (None: MNIST from the cache)."""
        if not isinstance(data, dict):
            data = load_mnist(data)
        test = data["test"]
        labels = test[1][:limit] if len(test) > 1 else None
        return self._replace(test_x=fixed_eval_sets(data, self.model)[1][:limit], test_y=labels)


def open_run(run_dir, which="best", device="cpu"):
    """The run in the folder ``run_dir`` with its ``which`` parameters on ``device`` (:func:`load_model`):
    the one way gvae eval, sample, plot, analyze and :func:`gvae.load` open a run. Returns an
    :class:`OpenRun`; ``.with_test_set(data)`` adds its test images."""
    model, params, config = load_model(run_dir, which, device)
    if config.task == "classify":  # every user of an OpenRun needs a generative model's decoder and prior
        raise ValueError(f"{run_dir} holds a classifier (--task classify), which has no decoder p(x|z) or prior "
                         "to evaluate, sample, plot or analyse: its test error and rate are in its summary.json")
    return OpenRun(Path(run_dir), which, device, model, params, config)


def prior_draws(model, params, n, seed, device="cpu"):
    """The decoder's output for n draws z ~ p(z) (a hierarchy: ancestral, from the top layer down) made
    from ``seed``, and the generator that made them (``gvae sample`` goes on with it to draw x ~ p(x|z)).
    ``gvae plot`` and ``gvae sample`` both draw here, so one seed gives one set of z. Returns (out, rng)."""
    rng = generator(device, seed)
    eps = rng.standard_normal((n, model.noise_size), dtype=model.dtype)
    return model.decode(params, model.prior_sample(params, eps)[0]), rng


def bits_per_dim(model, nats):
    """For continuous likelihoods: {name + "_bits_per_dim": -value / (n log 2)} of each entry."""
    if not model.likelihood.continuous:
        return {}
    return {f"{k}_bits_per_dim": -v / (model.n_in * math.log(2)) for k, v in nats.items()}
