"""The one place where an implementation is chosen, from the arrays' type.

NumPy arrays run on the Numba CPU kernels, CuPy arrays on the CUDA kernels. CuPy is never imported
here: an array can only be a CuPy array if CuPy is already in ``sys.modules``.
"""
import importlib
import os
import sys

import numpy as np

_IMPLEMENTATIONS = {"cpu": {}, "cuda": {}}
_KERNELS = os.path.dirname(os.path.abspath(__file__))


def cuda_modules():
    """Every ``*_cuda.py`` module under gvae/kernels (dotted names): importing one registers its CUDA
    twins. They are loaded the first time a CuPy array arrives."""
    names = []
    for folder, _, files in sorted(os.walk(_KERNELS)):
        package = __package__ + "".join("." + p for p in os.path.relpath(folder, _KERNELS).split(os.sep) if p != ".")
        names += [f"{package}.{f[:-3]}" for f in sorted(files) if f.endswith("_cuda.py")]
    return names


def register(name, device="cpu"):
    """Decorator: record ``fun`` as the ``device`` implementation of kernel ``name``."""
    def deco(fun):
        _IMPLEMENTATIONS[device][name] = fun
        return fun
    return deco


def device_of(*arrays):
    """``"cpu"`` or ``"cuda"`` for the given arrays (``None`` entries ignored); mixing is an error."""
    found = set()
    cupy = sys.modules.get("cupy")
    for a in arrays:
        if a is None or isinstance(a, (np.ndarray, np.generic, int, float)):
            found.add("cpu") if a is not None else None
        elif cupy is not None and isinstance(a, cupy.ndarray):
            found.add(("cuda", a.device.id))
        else:
            raise TypeError(f"expected a NumPy or CuPy array, got {type(a).__name__}")
    if len(found) > 1:
        raise TypeError("arrays live on different devices (" + ", ".join(sorted(map(str, found)))
                        + "): move them to one device first; gvae never copies between devices silently")
    dev = found.pop() if found else "cpu"
    return dev if dev == "cpu" else "cuda"


def implementation(name, *arrays):
    """The kernel ``name`` for the device the ``arrays`` live on."""
    device = device_of(*arrays)
    table = _IMPLEMENTATIONS[device]
    if device == "cuda" and name not in table:
        for mod in cuda_modules():
            importlib.import_module(mod)
    try:
        return table[name]
    except KeyError:
        raise RuntimeError(f"kernel {name!r} has no {device} implementation in this version of gvae") from None


def array_module(*arrays):
    """``numpy`` or ``cupy``, matching :func:`device_of`."""
    return np if device_of(*arrays) == "cpu" else sys.modules["cupy"]
