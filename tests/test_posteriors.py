"""Every posterior family against the dense Gaussian it stands for, and its gradients by finite
differences through sample + log q + KL."""
import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st
from scipy.stats import multivariate_normal

from gvae import ops
from gvae.model.lattice import lattice_shape
from gvae.model.posteriors import (FAMILIES, AR1Params, BandedParams, DiagonalParams, Rank1Params, dense_factor,
                                   get_family)
from tests.gradcheck import check_vjp

GRID = {"grid": (2, 3), "extgrid": (2, 3)}


def family(name, d=6):
    return get_family(name, grid_shape=GRID.get(name) if d == 6 else None)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.3, 0.7, 1.0]))
def test_against_dense_gaussian(name, seed, scale):
    rng = np.random.default_rng(seed)
    d = 6
    fam = family(name)
    q = fam.split(rng.standard_normal((3, fam.head_size(d))) * scale, d)
    z = fam.sample(q, rng.standard_normal((4, 3, d)))
    lp, kl, ent, prec = fam.log_prob(q, z), fam.kl(q), fam.entropy(q), fam.precision(q)
    # The dense reference inverts the precision formed as a matrix, which loses the smallest eigenvalues
    # of an ill-conditioned one (a chain whose off-diagonal dwarfs its diagonal reached a condition number
    # of 1e11, where SciPy refused the covariance): the comparison holds where the reference does.
    assume(all(np.linalg.cond(p) < 1e8 for p in prec))
    for b in range(3):
        cov = np.linalg.inv(prec[b])
        ref = multivariate_normal(q.mu[b], cov)
        np.testing.assert_allclose(lp[:, b], ref.logpdf(z[:, b]), rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(ent[b], ref.entropy(), rtol=1e-8, atol=1e-8)
        kl_ref = 0.5 * (np.trace(cov) + q.mu[b] @ q.mu[b] - d - np.linalg.slogdet(cov)[1])
        np.testing.assert_allclose(kl[b], kl_ref, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_samples_have_the_stated_covariance_and_mc_kl(name):
    rng = np.random.default_rng(5)
    d = 6
    fam = family(name)
    q = fam.split(rng.standard_normal((2, fam.head_size(d))), d)
    z = fam.sample(q, rng.standard_normal((100000, 2, d)))
    cov = np.linalg.inv(fam.precision(q)[1])
    np.testing.assert_allclose(np.cov(z[:, 1].T), cov, atol=0.03 * np.abs(cov).max())
    np.testing.assert_allclose(z[:, 1].mean(0), q.mu[1], atol=0.02 * np.sqrt(cov.diagonal().max()) * 3)
    np.testing.assert_allclose(fam.kl_mc(q, z), fam.kl(q), rtol=0.02, atol=0.03)


# Each family's record of q and its fields' shapes for a batch of 3 with d = 6 (docs/reference/api.md, section 4; the
# lattices are 2 x 3: grid offsets (0, 1, 3), extgrid (0, 1, 2, 3, 4)).
RECORDS = {"diagonal": (DiagonalParams, {"sigma": (3, 6)}),
           "ar1": (AR1Params, {"L": (3, 2, 6), "offsets": (2,), "s": (3,), "rho": (3,)}),
           "rank1": (Rank1Params, {"D": (3, 6), "u": (3, 6), "Dinv": (3, 6), "t": (3,), "c": (3,), "logdet_p": (3,)}),
           "chain": (BandedParams, {"L": (3, 2, 6), "offsets": (2,)}),
           "grid": (BandedParams, {"L": (3, 3, 6), "offsets": (3,)}),
           "extgrid": (BandedParams, {"L": (3, 5, 6), "offsets": (5,)}),
           "full": (BandedParams, {"L": (3, 6, 6), "offsets": (6,)})}


def test_every_family_has_its_record_listed():
    assert set(RECORDS) == set(FAMILIES)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_split_gives_the_family_record_with_its_fields(name):
    fam = family(name)
    cls, shapes = RECORDS[name]
    q = fam.split(np.random.default_rng(0).standard_normal((3, fam.head_size(6))), 6)
    assert type(q) is cls and fam.record is cls
    assert [f.name for f in dataclasses.fields(q)] == ["mu", *shapes]
    assert {k: np.shape(getattr(q, k)) for k in ["mu", *shapes]} == {"mu": (3, 6), **shapes}
    if fam.banded:
        assert q.offsets == tuple(fam.layout(6)[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.mu = q.mu + 1
    assert q["mu"] is q.mu  # by name too, as the dicts of earlier versions
    with pytest.raises(KeyError, match="has no field 'sigma2'; its fields: mu, "):
        q["sigma2"]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_another_family_record_is_refused(name):
    """Every method that takes q refuses a record of another type (and the dicts of earlier versions),
    naming the family and the record it takes."""
    rng = np.random.default_rng(1)
    fam = family(name)
    others = [family(other).split(rng.standard_normal((3, family(other).head_size(6))), 6) for other in FAMILIES]
    wrong = [q for q in others if not isinstance(q, fam.record)] + [{"mu": np.zeros((3, 6))}]
    assert len(wrong) >= 3
    z = rng.standard_normal((2, 3, 6))
    calls = {"sample": lambda q: fam.sample(q, z), "log_prob": lambda q: fam.log_prob(q, z), "kl": fam.kl,
             "entropy": fam.entropy, "variance": fam.variance, "precision": fam.precision,
             "factor_diagonals": fam.factor_diagonals, "correlation": fam.correlation,
             "kl_mc": lambda q: fam.kl_mc(q, z),
             "kl_diagonal": lambda q: fam.kl_diagonal(q, DiagonalParams(np.zeros(6), np.ones(6)))}
    for q in wrong:
        for method, call in calls.items():
            with pytest.raises(TypeError, match=f"the {name} posterior takes its parameters as a "
                                                f"{fam.record.__name__} .from its split., got {type(q).__name__}"):
                call(q)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@given(seed=st.integers(0, 2**32 - 1), samples=st.integers(1, 3))
def test_gradients_through_sample_log_q_and_kl(name, seed, samples):
    rng = np.random.default_rng(seed)
    d = 6
    fam = family(name)
    h = rng.standard_normal((2, fam.head_size(d)))
    eps = rng.standard_normal((samples, 2, d))

    def objective(h):
        q = fam.split(h, d)
        z = fam.sample(q, eps)
        return fam.log_prob(q, z) * 0.5 + fam.kl(q) - fam.entropy(q) + (z * z).sum(-1) * 0.1

    check_vjp(objective, [h], seed=seed, rtol=1e-5, atol=1e-7)


def test_ar1_covariance_is_s_times_toeplitz():
    fam = get_family("ar1")
    d = 5
    h = np.zeros((1, d + 2))
    h[0, d], h[0, d + 1] = 0.7, 0.4
    q = fam.split(h, d)
    s, rho = float(q.s[0]), float(q.rho[0])
    toeplitz = rho ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
    np.testing.assert_allclose(np.linalg.inv(fam.precision(q)[0]), s * toeplitz, rtol=1e-10)
    assert abs(rho) < 1 and s > 0


def test_rank1_with_zero_u_is_diagonal():
    fam = get_family("rank1")
    q = fam.split(np.zeros((1, 9)), 3)
    assert np.isfinite(q.c).all()
    z = fam.sample(q, np.ones((1, 1, 3)))
    np.testing.assert_allclose(z[0, 0], np.ones(3) / np.sqrt(np.log(2) + 1e-4))


def test_wraparound_links_are_zero_on_the_lattice():
    fam = get_family("extgrid", grid_shape=(3, 4))
    q = fam.split(np.ones((1, fam.head_size(12))), 12)
    prec = fam.precision(q)[0]
    for i in range(12):
        for j in range(12):
            ri, ci, rj, cj = i // 4, i % 4, j // 4, j % 4
            if max(abs(ri - rj), abs(ci - cj)) > 1:  # not lattice neighbours, nor sharing a neighbour
                if abs(ri - rj) > 2 or abs(ci - cj) > 2:
                    assert prec[i, j] == 0


def test_head_sizes():
    assert get_family("diagonal").head_size(16) == 32
    assert get_family("ar1").head_size(16) == 18
    assert get_family("rank1").head_size(16) == 48
    assert get_family("chain").head_size(16) == 48
    assert get_family("grid").head_size(16) == 64
    assert get_family("extgrid").head_size(16) == 96
    assert get_family("full").head_size(4) == 20


def test_lattice_shape():
    assert lattice_shape(16) == (4, 4)
    assert lattice_shape(12) == (3, 4)
    assert lattice_shape(12, (2, 6)) == (2, 6)
    with pytest.raises(ValueError, match="17 has no r x c lattice"):
        lattice_shape(17)
    with pytest.raises(ValueError, match="does not hold"):
        lattice_shape(12, (5, 3))
    with pytest.raises(ValueError, match="only to the grid and extgrid"):
        get_family("chain", grid_shape=(2, 2))
    with pytest.raises(ValueError, match="no r x c lattice"):
        get_family("grid").head_size(13)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.3, 0.7, 1.0]))
def test_variance_and_kl_to_a_diagonal_gaussian_against_dense(name, seed, scale):
    """diag(Sigma) and KL(q || N(m, diag s^2)) against the dense float64 covariance, for a batch of
    (S, B) posteriors (one per sample of a layer above, as in a hierarchy)."""
    rng = np.random.default_rng(seed)
    d = 6
    fam = family(name)
    q = fam.split(rng.standard_normal((2, 3, fam.head_size(d))) * scale, d)
    p = DiagonalParams(rng.standard_normal((2, 3, d)), np.exp(rng.uniform(-1, 1, (2, 3, d))))
    var, kl = fam.variance(q), fam.kl_diagonal(q, p)
    assert var.shape == (2, 3, d) and kl.shape == (2, 3)
    precision = fam.precision(q)
    cov = np.linalg.inv(precision)
    for s in range(2):
        for b in range(3):
            c, m, sd = cov[s, b], p.mu[s, b], p.sigma[s, b]
            # The dense inverse is itself good to about cond(P) * 1e-16 (seen: cond 1e7, 1.7e-9 apart).
            rtol = max(1e-9, 1e-15 * np.linalg.cond(precision[s, b]))
            np.testing.assert_allclose(var[s, b], np.diag(c), rtol=rtol, atol=1e-12)
            diff = q.mu[s, b] - m
            ref = 0.5 * (np.trace(np.diag(1 / sd ** 2) @ c) + diff @ (diff / sd ** 2) - d
                         + np.sum(np.log(sd ** 2)) - np.linalg.slogdet(c)[1])
            np.testing.assert_allclose(kl[s, b], ref, rtol=rtol, atol=1e-9)
    standard = DiagonalParams(np.zeros(d), np.ones(d))  # against N(0, I): the family's own KL
    np.testing.assert_allclose(fam.kl_diagonal(q, standard), fam.kl(q), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@given(seed=st.integers(0, 2**32 - 1))
def test_kl_to_a_diagonal_gaussian_gradients(name, seed):
    rng = np.random.default_rng(seed)
    d = 6
    fam = family(name)
    args = {"h": rng.standard_normal((2, 3, fam.head_size(d))) * 0.7,
            "m": rng.standard_normal((2, 3, d)), "s": rng.uniform(-1, 1, (3, d))}

    def objective(a):
        q = fam.split(a["h"], d)
        p = DiagonalParams(a["m"], ops.exp(a["s"]))
        return fam.kl_diagonal(q, p) + ops.sum(fam.variance(q) * a["m"], axis=-1) * 0.3

    check_vjp(objective, [args], seed=seed, rtol=1e-5, atol=1e-7)


# --- what a picture of q shows (gvae.plots asks the family) ----------------------------------------------

@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_factor_diagonals_are_the_cholesky_factor_of_the_precision(name, dtype):
    """Put back into a matrix, the diagonals are np.linalg.cholesky(precision); entries that do not
    exist (i < offset) or that the stencil holds at zero are 0 and not free; ``most`` keeps the first."""
    rng = np.random.default_rng(3)
    d = 6
    fam = family(name)
    q = fam.split(rng.standard_normal((3, fam.head_size(d))).astype(dtype), d)
    offsets, values, free = fam.factor_diagonals(q)
    chol = np.linalg.cholesky(fam.precision(q))
    assert values.dtype == np.float64 and values.shape == (3, len(offsets), d) and free.shape == (len(offsets), d)
    np.testing.assert_allclose(dense_factor(values, offsets), chol, rtol=1e-9, atol=1e-10)
    exists = np.arange(d) >= np.array(offsets)[:, None]
    if fam.banded:  # the stencil and its mask, read from the band storage
        stencil, mask = fam.layout(d)
        assert offsets == tuple(stencil)
        np.testing.assert_array_equal(free, mask != 0)
        np.testing.assert_array_equal(values, np.asarray(q.L, dtype=np.float64))
    else:  # the dense factor's diagonals, every existing entry free
        assert offsets == tuple(range(d))
        np.testing.assert_array_equal(free, exists)
    assert np.all(free <= exists) and np.all(values[:, ~free] == 0)
    assert free[0].all() and np.all(values[:, 0] > 0)
    first, kept, kept_free = fam.factor_diagonals(q, most=2)
    assert first == offsets[:2]
    np.testing.assert_array_equal(kept, values[:, :2])
    np.testing.assert_array_equal(kept_free, free[:2])


def test_lattice_wraparound_links_are_not_free():
    fam = family("grid")  # 2 x 3: offsets (0, 1, 3); unit 3 starts the second row, so has no left link
    offsets, _, free = fam.factor_diagonals(fam.split(np.ones((1, fam.head_size(6))), 6))
    assert offsets == (0, 1, 3)
    np.testing.assert_array_equal(free[1], [False, True, True, False, True, True])
    np.testing.assert_array_equal(free[2], [False, False, False, True, True, True])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_correlation_is_the_normalised_covariance(name):
    rng = np.random.default_rng(4)
    d = 6
    fam = family(name)
    q = fam.split(rng.standard_normal((2, 3, fam.head_size(d))), d)  # an (S, B) batch, as in a hierarchy
    corr = fam.correlation(q)
    cov = np.linalg.inv(fam.precision(q))
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    assert corr.shape == (2, 3, d, d)
    np.testing.assert_allclose(corr, cov / (sd[..., :, None] * sd[..., None, :]), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.diagonal(corr, axis1=-2, axis2=-1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(corr, np.swapaxes(corr, -1, -2))
    off = corr[..., ~np.eye(d, dtype=bool)]
    assert np.abs(off).max() < 1e-12 if name == "diagonal" else np.abs(off).max() > 0.01


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_dense_views_beyond_free_memory_are_refused_before_allocating(name, monkeypatch):
    """precision, correlation and (where it is dense) factor_diagonals build (B, d, d) float64 arrays on
    the host: where those cannot fit in the free memory, a ValueError naming the view and the sizes comes
    before any allocation (the shared check of gvae.kernels.band.dense). d = 1500: 18 MB a matrix."""
    from gvae.kernels.band import dense
    d = 1500
    fam = get_family(name, grid_shape=(30, 50) if name in GRID else None)
    q = fam.split(np.random.default_rng(0).standard_normal((1, fam.head_size(d))) * 0.1, d)
    monkeypatch.setattr(dense, "free_memory", lambda: 10_000_000)
    for view in ("precision", "correlation"):
        with pytest.raises(ValueError, match=rf"^{name}\.precision: the dense \(1, 1500, 1500\) float64 matrix "
                                             r"needs 18 MB.* more than the 10 MB this machine has free"):
            getattr(fam, view)(q)
    if name == "diagonal":  # its precision (18 MB) fits in 30 MB, what the views make of it does not
        monkeypatch.setattr(dense, "free_memory", lambda: 30_000_000)
        assert fam.precision(q).shape == (1, d, d)
        for view, needed in (("correlation", 54), ("factor_diagonals", 36)):
            with pytest.raises(ValueError, match=rf"^diagonal\.{view}: the dense \(1, 1500, 1500\) float64 matrix "
                                                 rf"needs 18 MB \({needed} MB with the temporaries"):
                getattr(fam, view)(q)
    with pytest.raises(ValueError, match=r"^dense_factor: the dense \(2, 1500, 1500\) float64 matrix needs 36 MB, "):
        dense_factor(np.ones((2, 1, d)), (0,))

def test_structured_and_banded_families():
    assert {n for n, cls in FAMILIES.items() if not cls.structured} == {"diagonal"}
    assert {n for n, cls in FAMILIES.items() if cls.banded} == {"ar1", "chain", "grid", "extgrid", "full"}


def test_diagonal_labels_name_the_links():
    labels = {name: [family(name).diagonal_label(o, 6) for o in range(6)] for name in FAMILIES}
    assert all(row[0] == "main diagonal L[i, i]" for row in labels.values())
    for name in ("ar1", "chain", "full"):
        assert labels[name][1] == "L[i, i-1]: previous unit" and labels[name][2] == "L[i, i-2]"
    for name in ("diagonal", "rank1"):
        assert labels[name][1:] == [f"L[i, i-{o}]" for o in range(1, 6)]
    # a 2 x 3 lattice: offset 1 is the left neighbour, 2 = cols - 1 the upper right, 3 up, 4 upper left
    assert labels["extgrid"][1:] == ["L[i, i-1]: left", "L[i, i-2]: upper right", "L[i, i-3]: up",
                                     "L[i, i-4]: upper left", "L[i, i-5]"]
    assert labels["grid"][1:4] == ["L[i, i-1]: left", "L[i, i-2]: upper right", "L[i, i-3]: up"]
    assert get_family("grid", grid_shape=(3, 4)).diagonal_label(4, 12) == "L[i, i-4]: up"
