"""What a run trains: a :class:`Task` per ``TrainConfig.task``, registered under its name
(:func:`register_task`) by the module that defines it. This package holds the protocol and the registry
(:mod:`.base`), what a run reports (:mod:`.report`) and how its trained runs are read (:mod:`.reading`),
the inputs of a VAE of the images (:mod:`.images`) and that VAE, ``generate`` (:mod:`.generate`), the
default task; the literature models register their tasks when :mod:`gvae.models` is imported (one folder
each, above training)."""
from . import generate  # noqa: F401  (registers the default task)
from .base import TASKS, Settings, Task, register_task, task_class
from .reading import Reading
from .report import ElboReport, Report

__all__ = ["TASKS", "ElboReport", "Reading", "Report", "Settings", "Task", "register_task", "task_class"]
