"""Training and evaluation of runs: the configuration, the Adam optimiser over the flat parameter buffer,
the trainer and its run folder (checkpoints, metrics), loading a trained run, and evaluation."""
from .config import TrainConfig
from .runs import load_model
from .trainer import NonFiniteError, Trainer, train

__all__ = ["TrainConfig", "Trainer", "NonFiniteError", "train", "load_model"]
