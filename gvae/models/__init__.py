"""The literature models, one folder each: the model (``model.py``), the task that trains it (``task.py``,
a :class:`gvae.training.tasks.Task` registered under its ``--task`` name) and the settings only that task
reads (``options.py``, the task's ``settings.Options``: :class:`gvae.training.tasks.Settings`), with whatever
else is the model's alone. Importing this package imports every folder in it, which registers their tasks: whoever
builds or reads a run of any task (the commands, :mod:`gvae.evaluation`, the sweeps) imports it first.

A folder added here is a model added: :func:`register_folders` finds it (docs/howto/adding_a_model.md)."""
import importlib
import pkgutil

# The folders in the order of the tasks' registration, which --task's choices and --help list after
# generate; a folder not named here registers after them, in the order of its name.
ORDER = ("vib", "vcca", "mutual", "bayes", "ladder", "hierarchical", "binary", "darn", "corex", "gamma_def",
         "sigmoid_belief", "poisson_def")


def register_folders(package=__name__, path=__path__):
    """Import every sub-package of ``package`` found on ``path`` (its folders), ORDER's first: each
    registers the task it defines. Returns their names, in that order."""
    found = sorted((m.name for m in pkgutil.iter_modules(path) if m.ispkg),
                   key=lambda name: (ORDER.index(name) if name in ORDER else len(ORDER), name))
    for name in found:
        importlib.import_module(f"{package}.{name}")
    return found


register_folders()
