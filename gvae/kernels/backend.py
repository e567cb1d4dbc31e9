"""The one place where a device is recognised from an array's type, and where an implementation is chosen.

A device is a name with an array type, an array module (the NumPy-like namespace whose functions make
and combine its arrays, with ``random.default_rng``) and the two copies between it and the host.
``"cpu"`` is NumPy, with the Numba kernels; ``"cuda"`` is CuPy, with the CUDA kernels, and is set up the
first time it is asked for by name or a CuPy array arrives (CuPy is imported only then); further devices
are added with :func:`register_device` and their kernels with :func:`register`.

Everything above the kernels asks this module for the array module of the arrays it holds
(:func:`array_module`), or of a device named in a command (:func:`device_module`), and moves arrays
between host and device only through :func:`to_device` and :func:`to_host`, at the edges of a run.
Python and NumPy scalars belong to no device: they combine with the arrays of any.
"""
import importlib
import os
import sys
from dataclasses import dataclass

import numpy as np

_IMPLEMENTATIONS = {"cpu": {}, "cuda": {}}
_KERNELS = os.path.dirname(os.path.abspath(__file__))
_SCALARS = (int, float, np.generic)
CUDA_INSTALL = 'pip install "gvae[cuda12]" (CUDA 12) or pip install "gvae[cuda13]" (CUDA 13)'


@dataclass(frozen=True)
class Device:
    """A device gvae can compute on: its arrays' type, their module, and the copies to and from the host.
    ``locate(array)`` tells apart the units of one device (the GPU ordinal), or is None."""
    name: str
    array_type: type
    module: object
    to_host: object
    from_host: object
    locate: object = None


_DEVICES = {"cpu": Device("cpu", np.ndarray, np, np.asarray, np.asarray)}
_ON_CPU = (_DEVICES["cpu"], None)


def register_device(name, array_type, module, to_host, from_host, locate=None):
    """Make ``name`` a device: arrays of ``array_type`` live on it, ``module`` is its array module (with
    ``module.random.default_rng``), ``to_host(a)`` returns a NumPy copy of ``a`` and ``from_host(a)`` a
    device copy of the NumPy array ``a``. Its kernels are registered with ``register(kernel, name)``."""
    if name in _DEVICES and _DEVICES[name].array_type is not array_type:
        raise ValueError(f"device {name!r} is already registered for {_DEVICES[name].array_type.__name__} arrays")
    _DEVICES[name] = Device(name, array_type, module, to_host, from_host, locate)
    _IMPLEMENTATIONS.setdefault(name, {})
    return _DEVICES[name]


def _cupy_device(cupy):
    return register_device("cuda", cupy.ndarray, cupy, cupy.asnumpy, cupy.asarray, locate=lambda a: a.device.id)


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
        _IMPLEMENTATIONS.setdefault(device, {})[name] = fun
        return fun
    return deco


def kernel_names(device="cpu"):
    """The names of the kernels registered for ``device``: what a device added from outside registers
    its own implementations under."""
    return sorted(_IMPLEMENTATIONS.get(device, ()))


def _placement(a):
    """(device, unit) of one array other than a NumPy one."""
    for dev in _DEVICES.values():
        if isinstance(a, dev.array_type):
            return dev, (dev.locate(a) if dev.locate else None)
    cupy = sys.modules.get("cupy")
    if "cuda" not in _DEVICES and cupy is not None and isinstance(a, cupy.ndarray):
        dev = _cupy_device(cupy)
        return dev, dev.locate(a)
    known = ", ".join(f"{d.array_type.__module__}.{d.array_type.__name__}" for d in _DEVICES.values())
    raise TypeError(f"expected a NumPy or CuPy array (or an array of a registered device: {known}), "
                    f"got {type(a).__name__}")


def device_of(*arrays):
    """The name of the device the given arrays live on (``None`` and scalars ignored; ``"cpu"`` when
    only those are given); arrays on two devices, or on two units of one, are an error."""
    found = None
    for a in arrays:
        if type(a) is np.ndarray:  # the common case first: one type test per array on the CPU
            place = _ON_CPU
        elif a is None or isinstance(a, _SCALARS):
            continue
        else:
            place = _placement(a)
        if found is None:
            found = place
        elif place != found:
            where = sorted({f"{d.name}:{u}" if u is not None else d.name for d, u in (found, place)})
            raise TypeError(f"arrays live on different devices ({', '.join(where)}): move them to one device "
                            "first; gvae never copies between devices silently")
    return "cpu" if found is None else found[0].name


def on_host(*arrays):
    """Whether the arrays live on the host (NumPy arrays and scalars: the CPU, whose kernels run on this
    machine's cores and caches)."""
    return device_of(*arrays) == "cpu"


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
    """The array module (``numpy``, ``cupy``, ...) of the device the arrays live on."""
    return _DEVICES[device_of(*arrays)].module


def device_names():
    """The devices a command may name: "cpu", "cuda" (CuPy, imported when first used) and any device
    registered since."""
    return tuple(dict.fromkeys(["cpu", "cuda", *_DEVICES]))


def _device(name):
    """The device called ``name``; "cuda" imports CuPy (a RuntimeError says what to install)."""
    if name in _DEVICES:
        return _DEVICES[name]
    if name != "cuda":
        raise ValueError(f"unknown device {name!r}; expected one of {list(device_names())}")
    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        raise RuntimeError(f"device 'cuda' needs CuPy, which is not installed: {CUDA_INSTALL}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001  (CUDARuntimeError without a driver, and the like)
        raise RuntimeError(f"device 'cuda': CuPy is installed but cannot reach a GPU ({e})") from None
    if count == 0:
        raise RuntimeError("device 'cuda': CuPy is installed but sees no CUDA GPU")
    return _cupy_device(cupy)


def device_module(name):
    """The array module of the device called ``name``: "cpu" -> numpy, "cuda" -> cupy (imported now; a
    RuntimeError names what to install when it is missing), or a device added by :func:`register_device`."""
    return _device(name).module


def to_device(array, name):
    """``array`` (NumPy, or another device's) as an array of device ``name``; itself when it is there."""
    target = _device(name)
    if device_of(array) == target.name and not isinstance(array, _SCALARS):
        return array
    return target.from_host(to_host(array))


def to_host(array):
    """A NumPy array with the values of ``array`` (a copy from a device; the array itself on the CPU)."""
    return _DEVICES[device_of(array)].to_host(array)


def generator(name, seed):
    """A random generator of device ``name``'s own module (``xp.random.default_rng(seed)``), so that its
    draws are made where they are used; ``seed`` is an int or a sequence of ints."""
    return device_module(name).random.default_rng(seed)
