"""A test-only device that behaves like a GPU where it matters to gvae, to prove the device path
without one.

:class:`FakeArray` keeps a NumPy array that it never hands out implicitly: ``__array__`` raises TypeError
(as CuPy's does) and counts the attempt, it has no ``__array_interface__`` and no buffer, NumPy's
ufuncs refuse it (``__array_ufunc__ = None``), and ``float()``, ``int()``, ``bool()`` and ``.item()``
work on size-1 arrays only, like ``.tolist()`` each counted as a sync (the explicit reads a GPU allows).
Its operators and methods take FakeArrays and Python or NumPy scalars; a NumPy array raises TypeError,
as with CuPy. :data:`xp` is its module (what ``cupy`` is to CuPy arrays): NumPy's functions over
FakeArrays, refusing NumPy arrays, with ``xp.random.default_rng`` drawing NumPy's streams straight into
FakeArrays (so a run here draws what the same run draws on the CPU).

:func:`install` registers the device ``"fake"`` with gvae's backend, its copies to the host (counted as
syncs) and from it (counted as uploads), and for every CPU kernel a fake kernel that unwraps its
arguments explicitly, runs the CPU kernel and wraps what comes back: the device's own work, not counted.
Scalars a CPU kernel returns come back as 0-d FakeArrays (the CUDA twins leave their flags on the
device), except ``sum_squares``'s, which is read to the host (counted) as its CUDA twin's is.

The emulated CuPy of tests/cuda_emulation builds its arrays on :class:`DeviceArray`; while one of its
streams captures (:data:`CAPTURED`), every operator and function here is recorded as it runs
(:func:`_done`), so that the graph's launch does it again, and a read to the host is refused.
"""
import operator
from collections import Counter

import numpy as np

from gvae.kernels import backend

COUNTS = Counter()  # "implicit" conversions attempted, explicit "sync"s, host-to-device "upload"s
KERNELS_READ_BACK = {"sum_squares"}
# While a stream of tests/cuda_emulation captures: one list, the work recorded so far (callables that a
# graph's launch calls in order); else empty. The fake device itself never captures.
CAPTURED = []


def capturing():
    """Whether an emulated stream is capturing now."""
    return bool(CAPTURED)


def _arrays(obj):
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [a for o in obj for a in _arrays(o)]
    if isinstance(obj, dict):
        return [a for o in obj.values() for a in _arrays(o)]
    return []


def _done(compute, inputs, writes=False):
    """``compute()``, a piece of NumPy work on device arrays; while a stream captures, also recorded, so
    that a graph's launch does it again on what its arrays then hold: work that ``writes`` into its inputs
    (or returns nothing) as it is, work that makes new arrays into those very arrays (scalars become 0-d
    arrays, so that they have one), and a view of the inputs not at all."""
    if not CAPTURED:
        return compute()
    with np.errstate(all="ignore"):  # on what the inputs hold before the graph runs: garbage, by design
        result = compute()
    if writes or result is None:  # (a function that returns nothing, as np.copyto, wrote into its arguments)
        CAPTURED[-1].append(compute)
        return result
    result = _generics_as_arrays(result)
    made = [r for r in _arrays(result) if not any(np.may_share_memory(r, a) for a in _arrays(inputs))]
    if made:
        def again():
            for r, value in zip(made, _arrays(_generics_as_arrays(compute()))):
                np.copyto(r, value, casting="unsafe")
        CAPTURED[-1].append(again)
    return result


def _generics_as_arrays(obj):
    if isinstance(obj, np.generic):
        return np.asarray(obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_generics_as_arrays(o) for o in obj)
    return obj


def _refuse_numpy(where):
    raise TypeError(f"{where}: got a NumPy array where a FakeArray is expected; move it with "
                    "gvae.kernels.to_device first (a GPU array module refuses host arrays too)")


def _unwrap(obj, where="fake device"):
    """The NumPy arrays inside FakeArrays, through tuples, lists and dicts; NumPy arrays refused."""
    if isinstance(obj, DeviceArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        _refuse_numpy(where)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_unwrap(o, where) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v, where) for k, v in obj.items()}
    return obj


def _wrap(obj, cls=None):
    """NumPy results as arrays of ``cls`` (FakeArray or a subclass; scalars as 0-d arrays, as CuPy
    returns them), through tuples/lists."""
    cls = cls or FakeArray
    if isinstance(obj, np.ndarray):
        return cls(obj)
    if isinstance(obj, np.generic):
        return cls(np.asarray(obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_wrap(o, cls) for o in obj)
    return obj


def _operand(other):
    """The NumPy value of an operator's other operand, or NotImplemented to let its reflected operator
    act: CuPy's rule, which defers only to a type with ``__array_ufunc__ = None`` or, lacking the
    attribute, a higher ``__array_priority__``."""
    if isinstance(other, DeviceArray):
        return other._a
    if isinstance(other, np.ndarray):
        _refuse_numpy("FakeArray operator")
    if isinstance(other, (int, float, complex, np.generic)):
        return other
    ufunc = getattr(type(other), "__array_ufunc__", NotImplemented)
    if ufunc is None or (ufunc is NotImplemented
                         and getattr(other, "__array_priority__", 0) > DeviceArray.__array_priority__):
        return NotImplemented
    raise TypeError(f"Unsupported type {type(other).__name__} (a FakeArray operator, as CuPy's, takes "
                    "device arrays and scalars)")


def _binary(op, iop=None):
    def forward(self, other):
        o = _operand(other)
        return NotImplemented if o is NotImplemented else _wrap(_done(lambda: op(self._a, o), (self._a, o)), type(self))

    def reflected(self, other):
        o = _operand(other)
        return NotImplemented if o is NotImplemented else _wrap(_done(lambda: op(o, self._a), (self._a, o)), type(self))

    def inplace(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        _done(lambda: iop(self._a, o), (self._a, o), writes=True)  # writes into the array itself
        return self
    return forward, reflected, inplace


class DeviceArray:
    """A device array (see the module's docstring): :class:`FakeArray` is the fake device's; another
    test device (tests/cuda_emulation's cupy) derives its own, so that the backend tells them apart."""

    __slots__ = ("_a",)
    __array_ufunc__ = None  # NumPy ufuncs and ndarray operators refuse or defer, never convert
    __array_priority__ = 100  # as cupy.ndarray's
    __hash__ = None

    def __init__(self, array):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"FakeArray wraps a NumPy array, got {type(array).__name__}")
        self._a = array

    def __array__(self, *args, **kwargs):
        COUNTS["implicit"] += 1
        raise TypeError("Implicit conversion of a FakeArray to a NumPy array is not allowed: use "
                        "gvae.kernels.to_host")

    # metadata, which lives on the host
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    dtype = property(lambda self: self._a.dtype)
    size = property(lambda self: self._a.size)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _wrap(self._a.T, type(self)))

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"{type(self).__name__}(shape={self._a.shape}, dtype={self._a.dtype})"

    def __getitem__(self, idx):
        i = _unwrap(idx, "FakeArray index")
        return _wrap(_done(lambda: self._a[i], (self._a, i)), type(self))

    def __setitem__(self, idx, value):
        v = _operand(value)
        if v is NotImplemented:
            raise TypeError(f"cannot assign a {type(value).__name__} into a FakeArray")
        i = _unwrap(idx, "FakeArray index")

        def assign():
            self._a[i] = v
        _done(assign, (self._a, v), writes=True)

    # explicit reads of one value: the syncs a GPU allows, counted
    def _read_one(self, what):
        _refuse_a_read_in_a_capture()
        if self._a.size != 1:
            raise TypeError(f"only a size-1 FakeArray can be read as {what}, got shape {self._a.shape}")
        COUNTS["sync"] += 1
        return self._a.reshape(()).item()

    def __float__(self):
        return float(self._read_one("a float"))

    def __int__(self):
        return int(self._read_one("an int"))

    def __bool__(self):
        return bool(self._read_one("a bool"))

    def item(self):
        return self._read_one("a Python scalar")

    def tolist(self):
        _refuse_a_read_in_a_capture()
        COUNTS["sync"] += 1
        return self._a.tolist()

    def __neg__(self):
        return _wrap(_done(lambda: -self._a, (self._a,)), type(self))


def _refuse_a_read_in_a_capture():
    if CAPTURED:
        raise RuntimeError("emulated stream: a read of the device while the stream is capturing (CUDA refuses "
                           "a synchronisation in a capture)")


for _name in ("add", "sub", "mul", "truediv", "pow", "matmul", "and", "or"):
    _fun = getattr(operator, _name + "_" if _name in ("and", "or") else _name)
    _f, _r, _i = _binary(_fun, getattr(operator, "i" + _name))
    setattr(DeviceArray, f"__{_name}__", _f)
    setattr(DeviceArray, f"__r{_name}__", _r)
    setattr(DeviceArray, f"__i{_name}__", _i)
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(DeviceArray, f"__{_name}__", _binary(getattr(operator, _name))[0])


def _method(name):
    def method(self, *args, **kwargs):
        a, k = _unwrap(args, name), _unwrap(kwargs, name)
        return _wrap(_done(lambda: getattr(self._a, name)(*a, **k), (self._a, a, k)), type(self))
    method.__name__ = name
    return method


for _name in ("reshape", "sum", "mean", "max", "min", "all", "astype", "copy", "transpose", "swapaxes", "argsort"):
    setattr(DeviceArray, _name, _method(_name))


class FakeArray(DeviceArray):
    """An array of the fake device."""

    __slots__ = ()


ARRAYS_ONLY = {"broadcast_to", "broadcast_arrays", "ascontiguousarray"}  # CuPy's, typed as ndarray arguments


class _Function:
    """A NumPy function over FakeArrays: arguments unwrapped (NumPy arrays refused), results wrapped;
    an ``out=`` FakeArray is returned itself, as CuPy returns its ``out``. Results are of class ``cls``."""

    def __init__(self, fun, name, cls=FakeArray):
        self.fun, self.name, self.cls = fun, name, cls

    def __call__(self, *args, **kwargs):
        arrays = args if self.name == "broadcast_arrays" else args[:1]
        if self.name in ARRAYS_ONLY and not all(isinstance(a, DeviceArray) for a in arrays):
            raise TypeError(f"xp.{self.name} takes device arrays only (as CuPy's, which refuses a scalar: "
                            f"'Argument 'array' has incorrect type'); got {[type(a).__name__ for a in arrays]}")
        a, k = _unwrap(args, f"xp.{self.name}"), _unwrap(kwargs, f"xp.{self.name}")
        result = _done(lambda: self.fun(*a, **k), (a, k), writes=k.get("out") is not None)
        out = kwargs.get("out")
        return out if isinstance(out, DeviceArray) and result is out._a else _wrap(result, self.cls)


class _Ufunc(_Function):
    def at(self, a, indices, b=None):
        a, i, b = (_unwrap(v, f"xp.{self.name}.at") for v in (a, indices, b))
        _done(lambda: self.fun.at(a, i, b), (a, i, b), writes=True)


class _Generator:
    """NumPy's Generator drawing into FakeArrays (the device's own generator)."""

    def __init__(self, gen, cls):
        self._gen, self._cls = gen, cls

    def __getattr__(self, name):
        return _Function(getattr(self._gen, name), f"random.Generator.{name}", self._cls)


class _Random:
    def __init__(self, cls):
        self._cls = cls

    def default_rng(self, seed=None):
        return _Generator(np.random.default_rng(seed), self._cls)


class _Module:
    """The fake device's array module: NumPy's namespace over arrays of class ``ndarray`` (FakeArray
    here, a subclass in a module derived from this one)."""

    ndarray = FakeArray

    def __init__(self):
        self.random = _Random(self.ndarray)

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, np.ufunc):
            return _Ufunc(attr, name, self.ndarray)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes and constants, shared with the host as CuPy shares NumPy's
        return _Function(attr, name, self.ndarray)


xp = _Module()


def to_host(a):
    COUNTS["sync"] += 1
    return a._a.copy()


def from_host(a):
    COUNTS["upload"] += 1
    return FakeArray(np.array(a, copy=True))


def _host_args(a):
    """The device arrays among a kernel's arguments, also inside lists and tuples (as ``matmul`` takes
    its products), as the host arrays behind them (so that kernels write into their storage)."""
    if isinstance(a, DeviceArray):
        return a._a
    if isinstance(a, (list, tuple)):
        return type(a)(_host_args(x) for x in a)
    return a


def _read_only(a):
    """A read-only view of the NumPy array ``a`` (anything else as it is)."""
    if isinstance(a, np.ndarray) and a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def band_inputs(args):
    """A band kernel's arguments as its CPU front hands them over (band/layout.py ``_read``): every array
    but the last, the output, read-only. Read-only is part of a Numba array type, so writable inputs
    would have every band kernel compiled a second time for this device alone."""
    last = max(i for i, a in enumerate(args) if isinstance(a, np.ndarray))
    return [a if i == last else _read_only(a) for i, a in enumerate(args)]


def _fake_kernel(name, cpu):
    band = name.startswith("band_")

    def kernel(*args):
        host = [_host_args(a) for a in args]
        result = cpu(*(band_inputs(host) if band else host))
        if name in KERNELS_READ_BACK:
            COUNTS["sync"] += 1
            return result
        if isinstance(result, tuple):
            return tuple(FakeArray(np.asarray(r)) for r in result)
        if isinstance(result, list):
            return [_wrap(r) for r in result]
        return _wrap(result)
    kernel.__name__ = f"fake_{name}"
    return kernel


def install():
    """Register the device "fake" and a fake twin of every CPU kernel (idempotent)."""
    backend.register_device("fake", FakeArray, xp, to_host, from_host)
    for name in backend.kernel_names("cpu"):
        backend.register(name, "fake")(_fake_kernel(name, backend.implementation(name)))
