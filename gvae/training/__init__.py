"""Training and evaluation of runs: the configuration, the Adam optimiser over the flat parameter buffer,
the trainer and its run folder (checkpoints, metrics), loading a trained run (and opening one for its
pictures), and evaluation."""
from . import rundir  # noqa: F401  (gvae.training.rundir, for the CLI)
from .config import TrainConfig
from .runs import load_model, open_run
from .trainer import DivergedError, NonFiniteError, Trainer, TrainingStopped, train

__all__ = ["TrainConfig", "Trainer", "TrainingStopped", "NonFiniteError", "DivergedError", "train", "load_model",
           "open_run"]
