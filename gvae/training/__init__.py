"""Training of runs: the configuration, the tasks a run may train (:mod:`.tasks`), the Adam optimiser over
the flat parameter buffer, the trainer and its run folder (checkpoints, metrics), and loading a trained run
(and opening one for its pictures). Evaluation is :mod:`gvae.evaluation`'s."""
from . import rundir  # noqa: F401  (gvae.training.rundir, for the CLI)
from .config import TrainConfig
from .runs import load_model, open_run
from .trainer import DivergedError, NonFiniteError, Trainer, TrainingStopped, train

__all__ = ["TrainConfig", "Trainer", "TrainingStopped", "NonFiniteError", "DivergedError", "train", "load_model",
           "open_run"]
