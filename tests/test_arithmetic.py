"""The tape's arithmetic kernels (gvae/kernels/arithmetic*.py) against NumPy: a op b with every broadcast the
kernels take (and those they leave to NumPy), on rows that lie apart, into given arrays; copies; sums
against float64 references. Each with a recording open (the kernels run, as a replay runs them) and
without (NumPy's operators), bit for bit the same; and replayed. The C entries' strided arrays."""
import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gvae import kernels
from gvae.kernels.cpu import entries, programs
from gvae.kernels.cpu import jit as jit_module
from gvae.kernels.cpu.jit import jit
from gvae.kernels.cpu.state import RUNTIME

SHAPES = [((4, 5), (4, 5)), ((4, 5), (5,)), ((4, 5), (4, 1)), ((4, 5), ()), ((3, 4, 5), (4, 5)),
          ((3, 4, 5), (1, 4, 1)), ((2, 3, 4), (3, 1)), ((1, 4, 5), (4, 5)), ((6,), ()), ((0, 5), (5,)),
          ((3, 4, 5), (3, 1, 5)), ((4, 5), (3, 4, 5))]


def _operand(rng, shape, dtype, apart):
    """A random array of ``shape``; with ``apart`` (2 axes or more) a block of columns of a wider one."""
    if apart and len(shape) >= 2:
        wide = rng.standard_normal(shape[:-1] + (shape[-1] + 3,)).astype(dtype)
        return wide[..., 1:shape[-1] + 1]
    return rng.standard_normal(shape).astype(dtype)


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(SHAPES), op=st.sampled_from(kernels.arithmetic.OPERATIONS),
       dtype=st.sampled_from([np.float32, np.float64]), apart=st.booleans(), swap=st.booleans(),
       seed=st.integers(0, 2**16))
def test_binary_is_numpys_bit_for_bit_recorded_or_not(case, op, dtype, apart, swap, seed):
    rng = np.random.default_rng(seed)
    a, b = (_operand(rng, s, dtype, apart) for s in case)
    if swap:
        a, b = b, a
    if op == "divide":
        b = np.where(np.abs(b) < 0.1, 1.0, b).astype(dtype)
    expected = getattr(np, op)(a, b)
    plain = kernels.binary(op, a, b)
    with programs.recording() as program:
        recorded = kernels.binary(op, a, b)
    for got in (plain, recorded):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    # The kernels took it (no NumPy while recording) but for a broadcast over a middle axis.
    assert (program.refused is None) == (case != ((3, 4, 5), (3, 1, 5)))


@pytest.mark.parametrize("scalar", [0.1, 3, -1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_python_number_takes_the_arrays_dtype_as_numpy_does(scalar, dtype):
    x = np.random.default_rng(0).standard_normal((7, 3)).astype(dtype)
    with programs.recording() as program:
        for op in kernels.arithmetic.OPERATIONS:
            for got, expected in ((kernels.binary(op, x, scalar), getattr(np, op)(x, scalar)),
                                  (kernels.binary(op, scalar, x), getattr(np, op)(scalar, x))):
                assert got.dtype == dtype
                np.testing.assert_array_equal(got, expected)
    assert program.refused is None


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("case", [((5, 100, 78), (5, 100, 1)), ((37, 11), (11,)), ((7, 1, 9), ())])
def test_binary_in_row_blocks_on_the_threads_is_one_calls_bits_and_replays(split_everything, count, case):
    kernels.set_threads(count)
    rng = np.random.default_rng(count)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in case)
    with programs.recording() as program:
        got = kernels.binary("multiply", a, b)
        copy = kernels.copy_into(got, np.empty_like(got))
    assert program.refused is None
    np.testing.assert_array_equal(got, a * b)
    np.testing.assert_array_equal(copy, a * b)
    a[...] = rng.standard_normal(a.shape)
    got[...], copy[...] = np.nan, np.nan
    program.run()
    np.testing.assert_array_equal(got, a * b)
    np.testing.assert_array_equal(copy, a * b)


def test_what_the_kernels_do_not_take_goes_through_numpy_and_refuses_a_recording():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    with programs.recording() as program:
        got = kernels.binary("add", a, np.ones(3, np.float64))  # mixed dtypes: NumPy promotes
    assert got.dtype == np.float64 and np.array_equal(got, a + 1.0)
    assert "add of float32(2, 3) and float64(3,)" in program.refused
    with programs.recording() as program:
        kernels.binary("multiply", a, np.arange(3))  # integers
    assert program.refused is not None


def test_binary_writes_into_out_and_a_replay_computes_it_again():
    rng = np.random.default_rng(1)
    head = rng.standard_normal((6, 8)).astype(np.float32)
    mu, raw = head[:, :4], head[:, 4:]  # columns apart, as a posterior's mean and scale
    out = np.empty((2, 6, 4), np.float32)
    with programs.recording() as program:
        kernels.binary("multiply", raw, mu, out=out[0])
        kernels.binary("add", mu, out[0], out=out[1])
        total = kernels.sum_axes(out, axis=(0, 1))
    assert program.refused is None
    head[...] = rng.standard_normal(head.shape)
    expected = [raw * mu, mu + raw * mu]
    out[...] = np.nan
    total[...] = np.nan
    program.run()
    np.testing.assert_array_equal(out[0], expected[0])
    np.testing.assert_array_equal(out[1], expected[1])
    np.testing.assert_allclose(total, np.sum(np.stack(expected).astype(np.float64), axis=(0, 1)), rtol=1e-6)


@pytest.mark.parametrize("op", kernels.arithmetic.UNARY)
@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 5), (9,), (), (0, 3), (700, 300)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary_is_the_same_recorded_or_not_and_within_an_ulp_of_float64(split_everything, op, shape, dtype):
    kernels.set_threads(2)
    rng = np.random.default_rng(4)
    signed = op in ("exp", "expm1", "absolute", "sign", "heaviside")
    x = rng.normal(0, 10, shape).astype(dtype) if signed else rng.uniform(0.01, 30.0, shape).astype(dtype)
    if x.ndim >= 2:
        x = np.concatenate([x, x[..., :2]], axis=-1)[..., 1:x.shape[-1] + 1]  # rows apart
    plain = kernels.unary(op, x)
    with programs.recording() as program:
        recorded = kernels.unary(op, x)
    assert program.refused is None and plain.dtype == dtype and plain.shape == x.shape
    np.testing.assert_array_equal(plain, recorded)
    reference = np.heaviside if op == "heaviside" else getattr(np, op)
    np.testing.assert_allclose(plain, reference(x.astype(np.float64), *([0.0] if op == "heaviside" else [])),
                               rtol=2 * np.finfo(dtype).eps)
    x[...] = x[::-1] if x.ndim else x  # a replay computes it again from what x holds now
    recorded[...] = np.nan
    program.run()
    np.testing.assert_array_equal(recorded, kernels.unary(op, x))


def test_unary_special_values_and_what_it_refuses():
    x = np.array([0.0, -1.0, np.inf, np.nan, -np.inf], np.float32)
    log, exp = kernels.unary("log", x), kernels.unary("exp", x)
    np.testing.assert_array_equal(log, np.array([-np.inf, np.nan, np.inf, np.nan, np.nan], np.float32))
    np.testing.assert_array_equal(exp, np.array([1.0, np.exp(-1.0), np.inf, np.nan, 0.0], np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_array_equal(kernels.unary("log1p", x), np.log1p(x.astype(np.float64)).astype(np.float32))
        np.testing.assert_array_equal(kernels.unary("sqrt", x), np.sqrt(x))
    np.testing.assert_array_equal(kernels.unary("log1p", np.float32([-1.0, -2.0, 1e-30])),
                                  np.float32([-np.inf, np.nan, 1e-30]))
    np.testing.assert_array_equal(kernels.unary("expm1", np.float32([-np.inf, np.inf, 1e-30, -0.0, 100.0])),
                                  np.float32([-1.0, np.inf, 1e-30, -0.0, np.inf]))
    signs = np.float32([0.0, -0.0, np.nan, -np.inf, 3.0, -1e-45])
    for op in ("absolute", "sign", "heaviside"):  # NumPy's bits, signed zeros included
        got = kernels.unary(op, signs)
        want = np.heaviside(signs, np.float32(0)) if op == "heaviside" else getattr(np, op)(signs)
        np.testing.assert_array_equal(got.view(np.int32)[[0, 1, 3, 4, 5]], want.view(np.int32)[[0, 1, 3, 4, 5]])
        assert np.isnan(got[2])
    with programs.recording() as program:
        assert kernels.unary("log", np.arange(1, 4)).dtype == np.float64  # integers: NumPy's
    assert "log of int64(3,)" in program.refused
    with pytest.raises(ValueError, match="op must be one of"):
        kernels.unary("sin", x)


SUMS = [((5, 7), None), ((5, 7), 0), ((5, 7), 1), ((5, 7), -1), ((2, 3, 4), (0, 1)), ((2, 3, 4), (1, 2)),
        ((2, 3, 4), 0), ((2, 3, 4), (0, 2)), ((9,), None), ((9,), 0), ((0, 4), 0), ((3, 0), 1)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("shape, axis", SUMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_are_float64_accurate_and_the_same_recorded_or_not(shape, axis, keepdims, dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 10 ** rng.uniform(-3, 3, shape)).astype(dtype)
    expected = np.sum(x.astype(np.float64), axis=axis, keepdims=keepdims)
    plain = kernels.sum_axes(x, axis=axis, keepdims=keepdims)
    with programs.recording():
        recorded = kernels.sum_axes(x, axis=axis, keepdims=keepdims)
    assert plain.shape == expected.shape and plain.dtype == dtype
    np.testing.assert_array_equal(plain, recorded)
    # One rounding of the float64 sum (within a float32 or float64 ulp of it, the sum being of mixed signs).
    np.testing.assert_allclose(plain, expected.astype(dtype), rtol=4 * np.finfo(dtype).eps,
                               atol=4 * np.finfo(dtype).eps * float(np.abs(x).sum()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows_apart", [False, True])
def test_column_sums_are_the_sequential_float64_sums(dtype, rows_apart):
    """A sum over the rows, read row by row into float64 running sums: each column's sum is the sequential
    float64 sum down the column (np.cumsum's last row), rounded once, bit for bit, for contiguous rows and for
    rows lying apart (a column slice), recorded or not."""
    rng = np.random.default_rng(11)
    big = (rng.standard_normal((300, 790)) * 10 ** rng.uniform(-3, 3, (300, 790))).astype(dtype)
    x = big[:, 3:787] if rows_apart else np.ascontiguousarray(big[:, 3:787])
    expected = np.cumsum(x.astype(np.float64), axis=0)[-1].astype(dtype)
    np.testing.assert_array_equal(kernels.sum_axes(x, axis=0, keepdims=False), expected)
    with programs.recording() as program:
        recorded = kernels.sum_axes(x, axis=0, keepdims=False)
    assert program.refused is None
    x[...] = 2 * x
    program.run()
    np.testing.assert_array_equal(recorded, 2 * expected)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1), (1, 2), (0, 2)])
def test_a_slice_sums_in_place_as_its_copy_does(axis):
    """Axes of one item do not stop a view: a column slice of (1, B, n) codes or a (3, 1, 4) with any
    strides sums recorded, with the bits of its contiguous copy's sum."""
    rng = np.random.default_rng(8)
    for x in (rng.standard_normal((1, 20, 240)).astype(np.float32)[:, :, 6:9],
              rng.standard_normal((3, 2, 4)).astype(np.float32)[:, 1:, :]):
        with programs.recording() as program:
            recorded = kernels.sum_axes(x, axis=axis)
        assert program.refused is None
        np.testing.assert_array_equal(recorded, kernels.sum_axes(np.ascontiguousarray(x), axis=axis))
        x[...] = -x
        program.run()
        np.testing.assert_array_equal(recorded, kernels.sum_axes(np.ascontiguousarray(x), axis=axis))


@pytest.mark.parametrize("axis", [0, (0, 1), -1])
def test_a_column_slice_of_samples_sums_recorded_through_a_kernel_copy(axis):
    """A (S, B, n) block of columns of a wider gradient (a concatenation's VJP gives such views, and
    VCCA-private's private codes theirs) summed over the samples: no view of it takes the sum kernel, so it
    is copied first, by the copy kernel, and the recording holds; the bits are the copy's sum's."""
    rng = np.random.default_rng(10)
    wide = rng.standard_normal((5, 20, 70)).astype(np.float32)
    x = wide[..., 40:]
    with programs.recording() as program:
        recorded = kernels.sum_axes(x, axis=axis)
    assert program.refused is None
    np.testing.assert_array_equal(recorded, kernels.sum_axes(np.ascontiguousarray(x), axis=axis))
    wide[...] = rng.standard_normal(wide.shape)
    program.run()
    np.testing.assert_array_equal(recorded, kernels.sum_axes(np.ascontiguousarray(x), axis=axis))


@pytest.mark.parametrize("shape", [(9, 9), (5, 300), (1, 4)])
def test_a_transposed_matrix_is_copied_by_its_columns_recorded(shape):
    """A transpose's gradient (a matrix with contiguous columns) as an operand or a copy's source: recorded
    through the column copy, NumPy's bits, and a replay reads what the matrix holds then."""
    rng = np.random.default_rng(9)
    base, w = rng.standard_normal(shape[::-1]).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    g = base.T
    with programs.recording() as program:
        product = kernels.binary("multiply", g, w)
        copy = kernels.contiguous(g)
    assert program.refused is None and copy.flags.c_contiguous
    np.testing.assert_array_equal(product, g * w)
    np.testing.assert_array_equal(copy, g)
    base[...] = rng.standard_normal(base.shape)
    program.run()
    np.testing.assert_array_equal(product, g * w)
    np.testing.assert_array_equal(copy, g)


def test_a_broadcast_view_sums_as_its_copy_does():
    """A view of stride 0 (a reduction's gradient broadcast back) is summed by the kernel after a copy, not
    by NumPy's pairwise float32 sum: the same bits as the materialised array a recording makes."""
    g = np.float32(1.0 / 3.0) * np.ones((1, 100), np.float32)
    view = np.broadcast_to(g, (7, 100))
    with programs.recording():
        copy = kernels.broadcast_to(g, (7, 100))
    assert copy.flags.writeable and not view.flags.writeable
    np.testing.assert_array_equal(kernels.sum_axes(view, axis=0), kernels.sum_axes(copy, axis=0))
    np.testing.assert_array_equal(kernels.sum_axes(view, axis=None), kernels.sum_axes(copy, axis=None))


def test_copy_into_and_contiguous():
    rng = np.random.default_rng(3)
    src = rng.standard_normal((4, 9)).astype(np.float32)[:, 2:7]
    dst = np.empty((3, 4, 5), np.float32)
    with programs.recording() as program:
        kernels.copy_into(src, dst)
        packed = kernels.contiguous(src)
        kernels.copy_into(0.0, dst[1])
    assert program.refused is None and packed.flags.c_contiguous and np.array_equal(packed, src)
    assert np.array_equal(dst[0], src) and np.array_equal(dst[2], src) and not dst[1].any()


@jit(cache=False)
def _twice(a, out):
    m, n = a.shape
    for i in range(m):
        for j in range(n):
            out[i, j] = 2 * a[i, j]


@jit(cache=False)
def _thrice(a, out):
    for i in range(a.shape[0]):
        out[i] = 3 * a[i]


def test_an_entry_compiles_its_kernel_only_for_the_dtypes_it_is_called_with():
    """A C entry per dtype: a float32 call compiles the kernel for float32 alone (one entry for both dtypes
    compiled the float64 kernel behind it too), a float64 call then adds its own; other dtypes are refused."""
    entry = entries.Entry(_thrice, a=entries.array("n"), out=entries.array("n"))
    for seen, dtype in enumerate((np.float32, np.float64), 1):
        a, out = np.arange(5, dtype=dtype), np.zeros(5, dtype)
        kind, (address, *packed) = entries.Call(entry, (a, out)).native
        ctypes.CFUNCTYPE(None, ctypes.c_void_p)(address)(np.array(packed, np.int64).ctypes.data)
        assert np.array_equal(out, 3 * a)
        # The entries this process has compiled or loaded for this kernel: the dtypes called so far, no other.
        called = {np.dtype(d) for d in (np.float32, np.float64)[:seen]}
        assert {d for e, d, _ in RUNTIME.entries if e is entry} == called
    with pytest.raises(ValueError, match="float32 or float64 arrays, not int32"):
        entry.address(np.int32)


@jit(cache=False)
def _plus_one(a, out):
    for i in range(a.shape[0]):
        out[i] = a[i] + 1


def test_an_entry_calls_the_kernel_its_callers_compiled_for_their_read_only_arrays():
    """Read-only is part of a Numba array type, and gvae's band functions hand their kernels read-only
    arrays: an entry handed the arguments of a Python call runs the kernel compiled for that call (one
    entry per variant of dtype and read-only flags), not a second copy typed writable."""
    entry = entries.Entry(_plus_one, a=entries.array("n"), out=entries.array("n"))
    run = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    for read_only in (True, False):
        a, out = np.arange(5.0), np.zeros(5)
        a.flags.writeable = not read_only
        _plus_one(a, out)  # (Python's call compiles the kernel for a's type)
        out[...] = 0
        kind, (address, *packed) = entries.Call(entry, (a, out)).native
        run(address)(np.array(packed, np.int64).ctypes.data)
        assert np.array_equal(out, a + 1)
        # One compiled kernel per flag: the entry's call added none.
        assert sorted(s[0].mutable for s in _plus_one.signatures) == [False, True][:2 - read_only]
    f64 = np.dtype(np.float64)
    assert {(d, r) for e, d, r in RUNTIME.entries if e is entry} == {(f64, (True, False)), (f64, (False, False))}
    with pytest.raises(ValueError, match="takes 2 arrays, but was given 1 read-only flags"):
        entry.address(np.float64, (True,))


def test_a_strided_entry_array_is_read_in_place():
    entry = entries.Entry(_twice, a=entries.array("m", "n", strided=True), out=entries.array("m", "n"))
    h = np.arange(24, dtype=np.float32).reshape(4, 6)
    out = np.zeros((4, 3), np.float32)
    variant, packed = entry.pack((h[:, 2:5], out))
    assert variant == (np.float32, (False, False)) and packed[1:4] == [4, 3, 6]  # m, n, the rows' spacing
    args = np.array(packed, np.int64)
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(entry.address(*variant))(args.ctypes.data)
    assert np.array_equal(out, 2 * h[:, 2:5])
    assert entry.pack((h[::2, 2:5], out[:2]))[1][3] == 12
    assert entry.pack((h.T[:3, :3], out[:3])) is None  # its columns apart: not rows apart
    with pytest.raises(ValueError, match="two axes"):
        entries.array("m", strided=True)


@jit(cache=False)
def _scaled(a, out, n, x, flip):
    for i in range(n):
        out[i] = -x * a[i] if flip else x * a[i]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_kind_of_entry_parameter_is_put_read_and_typed_alike(dtype, monkeypatch):
    """An INT, a FLOAT, a FLAG, a read-only and a writable array through the board: the C entry gives the
    kernel exactly the types that the entry says it does (the kernel a recording runs must be the one the
    entry calls), and the kernel sees the values the caller passed. (The entry is compiled here, not
    loaded from the cache, so that the kernel is compiled for the types the entry gives it.)"""
    monkeypatch.setattr(jit_module, "CACHING", False)
    entry = entries.Entry(_scaled, a=entries.array("m"), out=entries.array("m"), n=entries.INT, x=entries.FLOAT,
                          flip=entries.FLAG)
    a = np.arange(1.0, 6.0, dtype=dtype)
    a.flags.writeable = False
    run = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    for flip in (True, False):
        out = np.zeros(5, dtype)
        variant, packed = entry.pack((a, out, 4, 1 / 3, flip))
        assert variant == (dtype, (True, False))
        run(entry.address(*variant))(np.array(packed, np.int64).ctypes.data)
        expected = ((-1 if flip else 1) * (1 / 3) * a[:4].astype(np.float64)).astype(dtype)  # (Numba's rounding)
        assert np.array_equal(out[:4], expected) and out[4] == 0
    assert entry._types(np.dtype(dtype), (True, False)) in [tuple(s) for s in _scaled.signatures]


@jit(cache=False)
def _halve(a, out, k):
    m, n = a.shape
    for i in range(m):
        for j in range(n):
            out[i, j] = a[i, j] / 2 + k


def test_recorded_calls_of_a_strided_entry_compile_the_entrys_kernel_alone():
    """Numba types a C-contiguous array and one whose rows lie apart differently: while a program is
    recorded, Python's calls of a strided entry's kernel, whatever their operands' layouts, run the one
    kernel its C entry calls (the strided array typed as spaced rows), compiled once per dtype and read-only
    flags. Operands the entry cannot take (an array whose rows are not each contiguous) still go to the
    kernel's own dispatcher, as do calls outside a recording (its typing is the cheaper per call)."""
    entry = entries.Entry(_halve, a=entries.array("m", "n", strided=True), out=entries.array("m", "n"), k=entries.INT)
    h = np.arange(24, dtype=np.float32).reshape(4, 6)
    out = np.zeros((4, 3), np.float32)
    with programs.recording():
        for a in (h[:, :3].copy(), h[:, 2:5], h[:, 2:5].copy()):
            entries.Call(entry, (a, out, np.int32(1)))()
            assert np.array_equal(out, a / 2 + 1)
        assert [str(s[0]) for s in _halve.signatures] == ["array(float32, 2d, A)"]
        h.flags.writeable = False
        entries.Call(entry, (h[:, 1:4], out, 3))()
        assert np.array_equal(out, h[:, 1:4] / 2 + 3)
    for a in (h[:, 1:4], np.arange(24, dtype=np.float32).reshape(4, 6)[:, 2:5]):  # read-only, then writable
        kind, (address, *packed) = entries.Call(entry, (a, out, 3)).native
        ctypes.CFUNCTYPE(None, ctypes.c_void_p)(address)(np.array(packed, np.int64).ctypes.data)
        assert np.array_equal(out, a / 2 + 3)
    assert len(_halve.signatures) == 2  # the entries of both variants called the kernels the recorded calls had
    with programs.recording():
        columns = np.asfortranarray(h[:, :3])  # its items apart along a row
        entries.Call(entry, (columns, out, 0))()
    assert np.array_equal(out, columns / 2) and str(_halve.signatures[-1][0]) == "array(float32, 2d, F)"
    entries.Call(entry, (h[:, :3].copy(), out, 0))()
    assert np.array_equal(out, h[:, :3] / 2) and str(_halve.signatures[-1][0]) == "array(float32, 2d, C)"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [((4, 5), (4, 5)), ((3, 4, 5), (4, 1)), ((6,), ()), ((3, 4, 5), (3, 1, 5))])
def test_xlogy_and_xdivy_are_scipys_recorded_or_not(case, dtype):
    """x log y and x / y with their limit 0 where x = 0 (and y not NaN): SciPy's xlogy and x / y elsewhere,
    at the boundary values (y = 0, inf, NaN, negative) too, the same recorded, plain and through NumPy's
    pieces (a layout the kernels leave to NumPy)."""
    from scipy import special
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(case[0]).astype(dtype), np.abs(rng.standard_normal(case[1])).astype(dtype)
    a.reshape(-1)[::3] = 0
    if b.ndim:
        b.reshape(-1)[:4] = [0.0, np.inf, np.nan, -1.0][:b.size]
    with np.errstate(divide="ignore", invalid="ignore"):
        wants = {"xlogy": special.xlogy(a, b).astype(dtype),
                 "xdivy": np.where((a == 0) & ~np.isnan(b), 0, a / b).astype(dtype)}
    for op in kernels.arithmetic.LIMITS:
        plain = kernels.binary(op, a, b)
        with programs.recording() as program:
            recorded = kernels.binary(op, a, b)
        for got in (plain, recorded):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, wants[op], rtol=2e-7 if dtype == np.float32 else 1e-15)
        np.testing.assert_array_equal(plain, recorded)
        assert np.all(plain[np.broadcast_to(a == 0, plain.shape) & ~np.isnan(np.broadcast_to(b, plain.shape))] == 0)
        assert (program.refused is None) == (case != ((3, 4, 5), (3, 1, 5)))
    with pytest.raises(ValueError, match="op must be one of"):
        kernels.binary("xlog1py", a, a)
