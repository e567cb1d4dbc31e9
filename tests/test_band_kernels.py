"""The banded-factor kernels of gvae.kernels against dense NumPy references (tests/band_reference.py)."""
import subprocess
import sys

import numpy as np
import pytest

from gvae import kernels
from gvae.kernels.cpu.compile_cache import CACHING
from gvae.model import lattice
from tests.band_reference import (band_from_dense, dense_from_band, diag_inv_grad_ref, diag_inv_ref, logdet_ref,
                                  matvec_ref, matvec_t_ref, named_offsets, random_factor, random_offsets,
                                  solve_ref, solve_t_ref, trace_inv_grad_ref, trace_inv_ref)

RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def _cases():
    rng = np.random.default_rng(1234)
    cases = [((0,), 1), ((0,), 4), ((0, 1), 2), ((0, 1), 3), ((0, 2), 3), ((0, 1, 2), 3)]
    for n in (5, 8, 12, 16, 21, 30, 40):
        for name in ("chain", "grid", "extgrid"):
            offs = named_offsets(name, n)
            if offs is not None:
                cases.append((offs, n))
        for _ in range(2):
            cases.append((random_offsets(rng, n), n))
    return cases


CASES = _cases()
# (L batch shape, right-hand side lead shape): every way the two broadcast
BATCHES = [((), ()), ((), (5,)), ((3,), ()), ((3,), (4, 3)), ((2, 3), (3,)), ((2, 1), (2, 4)),
           ((4,), (1,)), ((3,), (2, 1, 3)), ((1,), (6, 1)), ((7,), (13, 7))]
VECTOR = {"band_solve_t": solve_t_ref, "band_solve": solve_ref, "band_matvec": matvec_ref,
          "band_matvec_t": matvec_t_ref}


def _close(actual, expected, dtype, scale=None):
    rtol = RTOL[dtype]
    scale = np.max(np.abs(expected)) if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-30))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offsets,n", CASES)
def test_vector_kernels_match_dense(offsets, n, dtype):
    rng = np.random.default_rng(n * 7919 + len(offsets))
    for batch, lead in BATCHES:
        L = random_factor(rng, batch, offsets, n, dtype)
        b = rng.standard_normal(lead + (n,)).astype(dtype)
        L0, b0 = L.copy(), b.copy()
        expected_shape = np.broadcast_shapes(batch, lead) + (n,)
        for name, ref in VECTOR.items():
            y = getattr(kernels, name)(L, offsets, b)
            assert y.dtype == dtype and y.shape == expected_shape, (name, batch, lead, y.shape)
            _close(y, ref(L, offsets, b), dtype)
        np.testing.assert_array_equal(L, L0)
        np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offsets,n", CASES)
def test_factor_kernels_match_dense(offsets, n, dtype):
    rng = np.random.default_rng(n * 104729 + len(offsets))
    for batch in [(), (3,), (2, 3), (70,)]:
        L = random_factor(rng, batch, offsets, n, dtype)
        L0 = L.copy()
        ld = kernels.band_logdet(L)
        assert ld.dtype == dtype and ld.shape == batch
        _close(ld, logdet_ref(L), dtype, scale=n)
        tr = kernels.band_trace_inv(L, offsets)
        assert tr.dtype == dtype and tr.shape == batch
        _close(tr, trace_inv_ref(L, offsets), dtype)
        g = rng.uniform(0.5, 1.5, size=batch)
        gL = kernels.band_trace_inv_grad(L, offsets, g.astype(dtype))
        assert gL.dtype == dtype and gL.shape == L.shape
        _close(gL, np.asarray(g)[..., None, None] * trace_inv_grad_ref(L, offsets), dtype)
        for k, o in enumerate(offsets):
            assert np.all(gL[..., k, :o] == 0)
        np.testing.assert_array_equal(L, L0)


def test_logdet_extreme_diagonal_and_grad():
    rng = np.random.default_rng(5)
    L = random_factor(rng, (3,), (0, 1), 37)
    L[0, 0, 5] = 1e-200
    L[1, 0, 9:20] = 1e250
    L[2, 0, 3] = 1e-40
    np.testing.assert_allclose(kernels.band_logdet(L), logdet_ref(L), rtol=1e-12)
    g = rng.standard_normal(3)
    gL = kernels.band_logdet_grad(L, g)
    expected = np.zeros_like(L)
    expected[:, 0] = g[:, None] / L[:, 0]
    np.testing.assert_array_equal(gL, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch,lead_a,lead_c,S", [((), (5,), (5,), 5), ((3,), (4, 3), (1, 3), 4),
                                                   ((2, 1), (2, 4), (2, 4), 4), ((2,), (200, 2), (2,), 200),
                                                   ((1,), (300, 1), (300, 1), 300)])
def test_band_outer_matches_dense(batch, lead_a, lead_c, S, dtype):
    rng = np.random.default_rng(3)
    offsets, n = (0, 1, 3, 4, 5), 11
    a = rng.standard_normal(lead_a + (n,)).astype(dtype)
    c = rng.standard_normal(lead_c + (n,)).astype(dtype)
    out = np.broadcast_shapes(batch, lead_a, lead_c)
    A = np.broadcast_to(a, out + (n,)).astype(np.float64)
    C = np.broadcast_to(c, out + (n,)).astype(np.float64)
    dense = band_from_dense(np.tril(A[..., :, None] * C[..., None, :]), offsets)
    # sum over the axes where the factor batch is broadcast
    expected = dense.sum(axis=tuple(range(len(out) - len(batch)))) if len(out) > len(batch) else dense
    expected = expected.sum(axis=tuple(i for i, s in enumerate(batch) if s == 1), keepdims=True) \
        if any(s == 1 for s in batch) else expected
    gL = kernels.band_outer(a, c, offsets, batch, scale=-2.0)
    assert gL.shape == batch + (len(offsets), n) and gL.dtype == dtype
    _close(gL, -2.0 * expected.reshape(gL.shape), dtype, scale=np.max(np.abs(expected)) * 2)


@pytest.mark.slow
@pytest.mark.parametrize("offsets", [(0, 1), (0, 1, 10), (0, 1, 70, 71, 72), (0, 65, 100), (0, 3, 4)])
def test_long_blocks_and_parallel_path(offsets):
    # n = 150 with offsets >= 64 takes the blocked substitution; 1200 right-hand sides the threads
    # (the dense references only on a corner of the batch, to keep them cheap)
    rng = np.random.default_rng(len(offsets))
    n = 150
    L = random_factor(rng, (30,), offsets, n)
    b = rng.standard_normal((40, 30, n))
    Ls, bs = L[:4], b[:6, :4]
    for name, ref in VECTOR.items():
        _close(getattr(kernels, name)(L, offsets, b)[:6, :4], ref(Ls, offsets, bs), np.float64)
    _close(kernels.band_trace_inv(L, offsets)[:4], trace_inv_ref(Ls, offsets), np.float64)
    _close(kernels.band_trace_inv_grad(L, offsets, np.ones(30))[:4], trace_inv_grad_ref(Ls, offsets),
           np.float64)
    g = kernels.band_outer(b, b[::-1], offsets, (30,))
    expected = band_from_dense(np.tril(np.einsum("sfi,sfj->fij", b[:, :4], b[::-1, :4])), offsets)
    _close(g[:4], expected, np.float64)


def test_noncontiguous_inputs():
    rng = np.random.default_rng(11)
    offsets, n = (0, 1, 4), 16
    L = np.swapaxes(random_factor(rng, (3, 4), offsets, n), 0, 1)      # batch (4, 3), not contiguous
    b = rng.standard_normal((n, 3, 5)).transpose(2, 1, 0)[:, None]      # (5, 1, 3, n), strided
    for name, ref in VECTOR.items():
        _close(getattr(kernels, name)(L, offsets, b), ref(L, offsets, b), np.float64)
    _close(kernels.band_trace_inv(L, offsets), trace_inv_ref(L, offsets), np.float64)


def test_sigma_diagonal_of_chain_recursion_large_n():
    # the O(n) chain recursion and the general window recursion agree (offset (0, 1) vs (0, 1, 2) with
    # a zero second diagonal) on a long chain
    # (250 factors: the parallel path)
    rng = np.random.default_rng(2)
    L = random_factor(rng, (250,), (0, 1), 300)
    L3 = np.concatenate([L, np.zeros((250, 1, 300))], axis=1)
    np.testing.assert_allclose(kernels.band_trace_inv(L, (0, 1)), kernels.band_trace_inv(L3, (0, 1, 2)),
                               rtol=1e-12)
    g = kernels.band_trace_inv_grad(L3, (0, 1, 2), np.ones(250))
    np.testing.assert_allclose(kernels.band_trace_inv_grad(L, (0, 1), np.ones(250)), g[:, :2], rtol=1e-10)
    _close(kernels.band_trace_inv(L[:3], (0, 1)), trace_inv_ref(L[:3], (0, 1)), np.float64)


_CACHED_CALLS = """
import numpy as np
from numba.core.registry import CPUDispatcher
from gvae import kernels
from gvae.kernels.backend import _IMPLEMENTATIONS
from gvae.kernels.band import cholesky_cpu, logdet_cpu, product_cpu, substitution_cpu, trace_cpu
L, b, offs = np.ones((2, 3, 9)), np.ones((2, 9)), (0, 1, 3)
for name in ("band_solve_t", "band_solve", "band_matvec_t", "band_matvec"):
    getattr(kernels, name)(L, offs, b)
kernels.band_outer(b, b, offs, (2,))
kernels.band_logdet(L)
kernels.band_logdet_grad(L, 1.0)
kernels.band_trace_inv(L, offs)
kernels.band_trace_inv_grad(L, offs, 1.0)
kernels.band_diag_inv(L, offs)
kernels.band_diag_inv_grad(L, offs, 1.0)
kernels.band_trace_inv_grad(L[:, :2], (0, 1), 1.0)  # the chain's own kernels, and a solve on blocks
kernels.band_solve(L[:, :2], (0, 1), b)
A = np.zeros((2, 4, 9)); A[:, 0] = 2.0
kernels.band_cholesky_grad(kernels.band_cholesky(A, (0, 1, 2, 3)), (0, 1, 2, 3), np.ones_like(A))
# the jitted entry points: the drivers' chunk functions and the kernels called directly
found = [_IMPLEMENTATIONS["cpu"]] + [vars(m) for m in (cholesky_cpu, logdet_cpu, product_cpu, substitution_cpu,
                                                       trace_cpu)]
entries = {id(k): k for d in found for k in (getattr(f, "kernel", f) for f in d.values())
           if isinstance(k, CPUDispatcher)}
called = [f for f in entries.values() if f.signatures]
print(sum(sum(f.stats.cache_misses.values()) for f in called), sum(sum(f.stats.cache_hits.values()) for f in called),
      " ".join(sorted(f.__name__ for f in called)))
"""


@pytest.mark.slow
def test_a_new_process_loads_every_kernel_from_numba_cache():
    # The kernels are generated variants (one per direction, one chunk function per kernel); a variant
    # that reached another through a closure or an argument would miss Numba's cache in every new process.
    if not CACHING:
        pytest.skip("Numba cannot cache gvae's kernels on this machine")
    for _ in range(2):  # the first run may compile (and store) what this process has not
        out = subprocess.run([sys.executable, "-c", _CACHED_CALLS], capture_output=True, text=True, check=True)
    misses, hits, *names = out.stdout.split()
    assert int(misses) == 0 and int(hits) >= 16, out.stdout
    assert {"_sigma_factors", "_grad_factors_wide", "_grad_factors_chain", "_solve_pairs_t_seg",
            "_solve_pairs_n_blk"} <= set(names), out.stdout


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------

def _good(n=6, offsets=(0, 1, 3)):
    rng = np.random.default_rng(0)
    return random_factor(rng, (2,), offsets, n), offsets, rng.standard_normal((2, n))


@pytest.mark.parametrize("name", sorted(VECTOR))
def test_bad_inputs_vector(name):
    fn = getattr(kernels, name)
    L, offs, b = _good()
    with pytest.raises(TypeError, match="float32 or float64"):
        fn(np.ones(L.shape, dtype=np.int64), offs, b)
    with pytest.raises(TypeError, match="one dtype"):
        fn(L, offs, b.astype(np.float32))
    with pytest.raises(ValueError, match=r"offsets\[0\] must be 0"):
        fn(L, (1, 2, 3), b)
    with pytest.raises(ValueError, match="strictly increasing"):
        fn(L, (0, 3, 3), b)
    with pytest.raises(ValueError, match="must be < n=6"):
        fn(L, (0, 1, 6), b)
    with pytest.raises(ValueError, match="K=3 diagonals"):
        fn(L, (0, 1), b)
    with pytest.raises(ValueError, match="must be ints"):
        fn(L, (0, 1.5, 3), b)
    with pytest.raises(ValueError, match="last axis"):
        fn(L, offs, b[:, :5])
    with pytest.raises(ValueError, match="do not broadcast"):
        fn(L, offs, np.zeros((3, 6)))
    bad = L.copy()
    bad[1, 0, 4] = 0.0
    with pytest.raises(ValueError, match="strictly positive"):
        fn(bad, offs, b)
    bad = L.copy()
    bad[0, 2, 5] = np.nan
    with pytest.raises(ValueError, match="L contains NaN or inf"):
        fn(bad, offs, b)
    bad = b.copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="b contains NaN or inf|x contains NaN or inf"):
        fn(L, offs, bad)
    with pytest.raises(ValueError, match="at least 2 dimension"):
        fn(L[0, 0], offs, b)
    bad = L.copy()
    bad[1, 0, 3] = np.inf  # its reciprocal is 0: caught through the diagonal's checksum
    with pytest.raises(ValueError, match="L contains NaN or inf"):
        fn(bad, offs, b)
    fn(bad, offs, b, check=False)  # no scan asked for


def test_overflow_from_finite_inputs_is_returned():
    L, offs, b = _good()
    L = L.astype(np.float32)
    L[:, 0] = 1e-20
    x = kernels.band_solve(L, offs, np.full_like(b, 3e30, dtype=np.float32))
    assert np.isinf(x).any()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offsets,n", CASES)
def test_diag_inv_matches_dense(offsets, n, dtype):
    # one factor, partial and full blocks of 8, more than 8 (chunks of blocks), nested batches
    rng = np.random.default_rng(n * 7919 + len(offsets))
    for batch in [(), (1,), (3,), (8,), (2, 3), (19,)]:
        L = random_factor(rng, batch, offsets, n, dtype)
        L0 = L.copy()
        d = kernels.band_diag_inv(L, offsets)
        assert d.dtype == dtype and d.shape == batch + (n,)
        _close(d, diag_inv_ref(L, offsets), dtype)
        _close(d.astype(np.float64).sum(axis=-1), kernels.band_trace_inv(L, offsets), dtype)
        g = rng.uniform(-1.5, 1.5, size=batch + (n,))
        gL = kernels.band_diag_inv_grad(L, offsets, g.astype(dtype))
        assert gL.dtype == dtype and gL.shape == L.shape
        _close(gL, diag_inv_grad_ref(L, offsets, g), dtype)
        for k, o in enumerate(offsets):
            assert np.all(gL[..., k, :o] == 0)
        # a constant g is the trace's gradient; g broadcasts over the batch
        ones = np.ones(n, dtype)
        _close(kernels.band_diag_inv_grad(L, offsets, ones), kernels.band_trace_inv_grad(L, offsets,
               np.ones(batch, dtype)), dtype)
        np.testing.assert_array_equal(L, L0)


@pytest.mark.slow
@pytest.mark.parametrize("offsets", [(0, 1), (0, 1, 10), (0, 1, 70, 71, 72), (0, 3, 4)])
def test_diag_inv_parallel_path(offsets):
    # 40 factors of n = 150: the threads (dense references on a corner of the batch)
    rng = np.random.default_rng(len(offsets) + 5)
    n = 150
    L = random_factor(rng, (40,), offsets, n)
    g = rng.standard_normal((40, n))
    _close(kernels.band_diag_inv(L, offsets)[:4], diag_inv_ref(L[:4], offsets), np.float64)
    _close(kernels.band_diag_inv_grad(L, offsets, g)[:4], diag_inv_grad_ref(L[:4], offsets, g[:4]), np.float64)


def test_bad_inputs_diag_inv():
    L, offs, _ = _good()
    g = np.ones(L.shape[:-2] + L.shape[-1:])
    for fn in (kernels.band_diag_inv, lambda L_, o: kernels.band_diag_inv_grad(L_, o, g)):
        bad = L.copy()
        bad[0, 0, 0] = -1.0
        with pytest.raises(ValueError, match="strictly positive"):
            fn(bad, offs)
        bad[0, 0, 0] = np.inf
        with pytest.raises(ValueError, match="NaN or inf"):
            fn(bad, offs)
        with pytest.raises(ValueError, match="K=3 diagonals"):
            fn(L, (0, 1))
        with pytest.raises(TypeError):
            fn(np.ones(L.shape, np.int64), offs)
    badg = g.copy()
    badg[1, 2] = np.nan
    with pytest.raises(ValueError, match="g contains NaN or inf"):
        kernels.band_diag_inv_grad(L, offs, badg)
    with pytest.raises(ValueError, match="does not broadcast"):
        kernels.band_diag_inv_grad(L, offs, np.ones(L.shape[-1] + 1))
    # nonexistent slots are ignored, whatever they hold
    L[:, 1, 0] = np.inf
    L[:, 2, :3] = np.nan
    assert np.all(np.isfinite(kernels.band_diag_inv(L, offs)))
    assert np.all(np.isfinite(kernels.band_diag_inv_grad(L, offs, g)))


def test_bad_inputs_factor():
    L, offs, _ = _good()
    bad = L.copy()
    bad[0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="strictly positive"):
        kernels.band_logdet(bad)
    with pytest.raises(ValueError, match="strictly positive"):
        kernels.band_trace_inv(bad, offs)
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        kernels.band_logdet(bad)
    with pytest.raises(ValueError, match="NaN or inf"):
        kernels.band_trace_inv(bad, offs)
    with pytest.raises(ValueError, match="K=3 diagonals"):
        kernels.band_trace_inv(L, (0, 1))
    # nonexistent slots are ignored, whatever they hold
    L[:, 1, 0] = np.inf
    L[:, 2, :3] = np.nan
    assert np.all(np.isfinite(kernels.band_trace_inv(L, offs)))


# --------------------------------------------------------------------------------------------------
# Lattice stencils
# --------------------------------------------------------------------------------------------------

def test_named_offsets():
    assert lattice.chain_offsets() == (0, 1)
    assert lattice.grid_offsets(5, 7) == (0, 1, 7)
    assert lattice.extgrid_offsets(5, 7) == (0, 1, 6, 7, 8)
    with pytest.raises(ValueError, match="cols must be >= 3"):
        lattice.extgrid_offsets(4, 2)
    with pytest.raises(ValueError, match="rows must be a positive int"):
        lattice.grid_offsets(0, 4)


@pytest.mark.parametrize("rows,cols", [(1, 3), (3, 3), (4, 5), (5, 4), (28, 28), (2, 2)])
def test_lattice_mask_keeps_exactly_the_neighbours(rows, cols):
    n = rows * cols
    r, c = np.divmod(np.arange(n), cols)
    for offsets, adjacent in [((0, 1) + ((cols,) if cols > 1 and cols < n else ()),
                               lambda dr, dc: abs(dr) + abs(dc) <= 1),
                              (lattice.extgrid_offsets(rows, cols) if cols >= 3 and cols + 1 < n else None,
                               lambda dr, dc: max(abs(dr), abs(dc)) <= 1)]:
        if offsets is None or offsets[-1] >= n:
            continue
        mask = lattice.lattice_mask(offsets, rows, cols)
        assert mask.shape == (len(offsets), n)
        for k, o in enumerate(offsets):
            for i in range(n):
                j = i - o
                want = j >= 0 and adjacent(r[i] - r[j], c[i] - c[j])
                assert mask[k, i] == want, (offsets, k, i)


def test_lattice_mask_wraparound_entries():
    mask = lattice.lattice_mask((0, 1, 3, 4, 5), 3, 4)
    # offset 1: first pixel of each row; offset c+1: first pixel of each row; offset c-1: last pixel
    assert np.flatnonzero(mask[1] == 0).tolist() == [0, 4, 8]
    assert np.flatnonzero(mask[4] == 0).tolist() == [0, 1, 2, 3, 4, 8]
    assert np.flatnonzero(mask[2] == 0).tolist() == [0, 1, 2, 3, 7, 11]
    assert np.flatnonzero(mask[3] == 0).tolist() == [0, 1, 2, 3]
    assert np.all(mask[0] == 1)


def test_dense_reference_roundtrip():
    rng = np.random.default_rng(0)
    L = random_factor(rng, (2,), (0, 2, 3), 7, garbage=0.0)
    np.testing.assert_array_equal(band_from_dense(dense_from_band(L, (0, 2, 3)), (0, 2, 3)), L)
