"""What a run trains: a :class:`Task` per ``TrainConfig.task``, registered under its name
(:func:`register_task`) by the module that defines it. This package holds the protocol and the registry
(:mod:`.base`) and the VAE of the images, ``generate`` (:mod:`.generate`), the default task; the literature
models register their tasks when :mod:`gvae.models` is imported (one folder each, above training)."""
from . import generate  # noqa: F401  (registers the default task)
from .base import TASKS, Task, register_task, task_class

__all__ = ["TASKS", "Task", "register_task", "task_class"]
