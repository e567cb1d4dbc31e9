"""gvae.torch.BandedPrecisionNormal against torch.distributions.MultivariateNormal(precision_matrix=L L^T)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gvae.torch needs PyTorch (pip install gvae[torch])")

from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence  # noqa: E402

from gvae.model.lattice import lattice_mask  # noqa: E402
from gvae.torch import BandedPrecisionNormal  # noqa: E402
from tests.band_reference import dense_from_band, random_factor  # noqa: E402

ROWS, COLS = 3, 4
N = ROWS * COLS
K = {"chain": 2, "grid": 3, "extgrid": 5}
f64 = torch.float64


def raw_factor(stencil, batch=(), seed=0, garbage=np.nan):
    offs = {"chain": (0, 1), "grid": (0, 1, COLS), "extgrid": (0, 1, COLS - 1, COLS, COLS + 1)}[stencil]
    return torch.tensor(random_factor(np.random.default_rng(seed), batch, offs, N, garbage=garbage))


def make(stencil, loc, factor, **kwargs):
    if stencil == "chain":
        return BandedPrecisionNormal.chain(loc, factor, **kwargs)
    return getattr(BandedPrecisionNormal, stencil)(loc, factor, ROWS, COLS, **kwargs)


def dense(q):
    """The reference: MultivariateNormal with the precision L L^T built here from the band, densely."""
    D = torch.tensor(dense_from_band(q.factor.detach().numpy(), q.offsets))
    return MultivariateNormal(q.loc.detach(), precision_matrix=D @ D.mT)


BATCHES = [((), ()), ((3,), (3,)), ((2, 3), (3,)), ((3,), (2, 1))]  # (loc batch, factor batch)


@pytest.mark.parametrize("stencil", list(K))
@pytest.mark.parametrize("loc_batch,factor_batch", BATCHES)
def test_against_the_dense_multivariate_normal(stencil, loc_batch, factor_batch):
    torch.manual_seed(0)
    loc = torch.randn(*loc_batch, N, dtype=f64)
    q = make(stencil, loc, raw_factor(stencil, factor_batch))
    p = dense(q)
    assert q.batch_shape == torch.broadcast_shapes(loc_batch, factor_batch) and q.event_shape == (N,)
    z = q.sample((5,))
    assert z.shape == (5,) + q.batch_shape + (N,)
    close = dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(q.log_prob(z), p.log_prob(z), **close)
    torch.testing.assert_close(q.entropy(), p.entropy().expand(q.batch_shape), **close)
    torch.testing.assert_close(q.mean, p.mean, **close)
    torch.testing.assert_close(q.variance, p.variance, **close)
    torch.testing.assert_close(q.precision_matrix, p.precision_matrix, **close)
    torch.testing.assert_close(q.covariance_matrix, p.covariance_matrix, **close)
    standard = MultivariateNormal(torch.zeros(N, dtype=f64), torch.eye(N, dtype=f64))
    for prior in (Normal(0.0, 1.0), Normal(torch.zeros(N, dtype=f64), torch.ones(1, dtype=f64)),
                  Independent(Normal(torch.zeros(N, dtype=f64), torch.ones(N, dtype=f64)), 1)):
        torch.testing.assert_close(kl_divergence(q, prior), kl_divergence(p, standard), **close)
    m = torch.randn(*factor_batch, N, dtype=f64)
    s = torch.rand(N, dtype=f64) + 0.5
    diagonal = MultivariateNormal(m, torch.diag_embed(s.square().expand_as(m)))
    want = kl_divergence(p, diagonal)
    torch.testing.assert_close(kl_divergence(q, Independent(Normal(m, s), 1)), want, **close)
    torch.testing.assert_close(kl_divergence(q, Normal(m, s)), want, **close)
    # A scale that is one number per distribution takes the trace path: the same KL.
    s1 = torch.full((1,), 1.7, dtype=f64)
    torch.testing.assert_close(kl_divergence(q, Normal(m, s1)),
                               kl_divergence(p, MultivariateNormal(m, 1.7 ** 2 * torch.eye(N, dtype=f64))), **close)


@pytest.mark.parametrize("stencil", list(K))
def test_gradients_match_the_dense_path(stencil):
    loc = torch.randn(3, N, dtype=f64, requires_grad=True)
    F = raw_factor(stencil, (3,), garbage=0.0).requires_grad_()
    z = torch.randn(4, 3, N, dtype=f64)
    m, s = torch.randn(N, dtype=f64), torch.rand(N, dtype=f64) + 0.5

    def losses(dist):
        return dist.log_prob(z).sum() + dist.entropy().sum() + kl_divergence(dist, Normal(0.0, 1.0)).sum() \
            + kl_divergence(dist, Independent(Normal(m, s), 1)).sum()

    got = torch.autograd.grad(losses(make(stencil, loc, F)), (loc, F))
    # The dense path on the same (masked) factor, differentiable in torch.
    D = make(stencil, loc, F)._dense_factor()
    p = MultivariateNormal(loc, precision_matrix=D @ D.mT)
    pm = MultivariateNormal(m, torch.diag(s.square()))

    def dense_losses():
        return p.log_prob(z).sum() + p.entropy().sum() + kl_divergence(p, MultivariateNormal(
            torch.zeros(N, dtype=f64), torch.eye(N, dtype=f64))).sum() + kl_divergence(p, pm).sum()
    want = torch.autograd.grad(dense_losses(), (loc, F))
    for g, h in zip(got, want):
        torch.testing.assert_close(g, h, rtol=1e-9, atol=1e-9)


def test_sample_moments():
    torch.manual_seed(1)
    q = make("extgrid", torch.randn(N, dtype=f64), raw_factor("extgrid"))
    S = 40000
    z = q.sample((S,))
    Sigma = q.covariance_matrix
    sd = Sigma.diagonal().sqrt()
    # Mean: standard error sd / sqrt(S); covariance entry: sqrt((s_ii s_jj + s_ij^2) / S).
    assert torch.all((z.mean(0) - q.loc).abs() < 5 * sd / S ** 0.5)
    C = torch.cov(z.T)
    se = ((torch.outer(Sigma.diagonal(), Sigma.diagonal()) + Sigma.square()) / S).sqrt()
    assert torch.all((C - Sigma).abs() < 5 * se)


def test_rsample_is_reparameterised():
    loc = torch.randn(2, N, dtype=f64, requires_grad=True)
    F = raw_factor("grid", (2,), garbage=0.0).requires_grad_()
    q = make("grid", loc, F)
    z = q.rsample((3,))
    assert q.has_rsample and z.requires_grad and not q.sample().requires_grad
    z.sum().backward()
    torch.testing.assert_close(loc.grad, torch.full_like(loc, 3.0))
    assert F.grad is not None and torch.all(F.grad[:, 0] != 0)


@pytest.mark.parametrize("stencil", ["grid", "extgrid"])
def test_lattice_constructors_mask_the_wrap_around(stencil):
    q = make(stencil, torch.zeros(N, dtype=f64), raw_factor(stencil, garbage=np.nan))
    mask = torch.tensor(lattice_mask(q.offsets, ROWS, COLS)) > 0
    assert torch.all(q.factor[~mask] == 0) and torch.all(q.factor[mask] != 0)
    # The precision links only lattice neighbours: pixel (r, c) never to (r - 1, COLS - 1) across an edge.
    P = q.precision_matrix
    r, c = np.divmod(np.arange(N), COLS)
    far = (np.abs(r[:, None] - r[None, :]) > 2) | (np.abs(c[:, None] - c[None, :]) > 2)
    assert torch.all(P[torch.tensor(far)] == 0)
    for i in range(1, ROWS):
        assert torch.all(q.factor[..., 1, i * COLS] == 0)


def test_the_lattice_mask_is_made_once_and_serves_autograd_after_inference_mode():
    """The mask lives on the factor's device, made on first use (on a GPU each call would copy it from the
    host); made first under inference mode, it is still a tensor autograd may save."""
    from gvae.torch import distribution
    distribution._device_mask.cache_clear()
    loc, factor = torch.zeros(2, 6, dtype=torch.float64), torch.ones(2, 5, 6, dtype=torch.float64)
    with torch.inference_mode():
        BandedPrecisionNormal.extgrid(loc, factor, 2, 3)
    f = factor.clone().requires_grad_()
    BandedPrecisionNormal.extgrid(loc, f, 2, 3).log_prob(torch.zeros(2, 6, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(f.grad).all()
    info = distribution._device_mask.cache_info()
    assert (info.currsize, info.hits) == (1, 1)


def test_expand():
    q = make("chain", torch.randn(3, N, dtype=f64), raw_factor("chain", (3,)))
    e = q.expand((4, 3))
    assert e.batch_shape == (4, 3) and e.offsets == q.offsets
    z = e.sample((2,))
    assert z.shape == (2, 4, 3, N)
    torch.testing.assert_close(e.log_prob(z), q.log_prob(z))
    assert e.entropy().shape == (4, 3) and e.variance.shape == (4, 3, N)
    torch.testing.assert_close(kl_divergence(e, Normal(0.0, 1.0)), kl_divergence(q, Normal(0.0, 1.0)).expand(4, 3))


@pytest.mark.slow
def test_compiled_sample_score_and_kl_equal_eager():
    loc = torch.randn(3, N, dtype=f64, requires_grad=True)
    F = raw_factor("extgrid", (3,), garbage=0.0).requires_grad_()

    def f(loc, F):
        q = BandedPrecisionNormal.extgrid(loc, F, ROWS, COLS, validate_args=False)
        z = q.rsample((4,))
        return q.log_prob(z).sum() + kl_divergence(q, Normal(0.0, 1.0)).sum() + q.entropy().sum()

    compiled = torch.compile(f, fullgraph=True)
    # Inductor draws its own random numbers unless told to use eager's.
    with torch._inductor.config.patch(fallback_random=True):
        torch.manual_seed(5)
        got = compiled(loc, F)
        g_got = torch.autograd.grad(got, (loc, F))
    torch.manual_seed(5)
    want = f(loc, F)
    g_want = torch.autograd.grad(want, (loc, F))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, h in zip(g_got, g_want):
        torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-12)


def test_the_helpers_are_marked_constant_as_torch_compiler_marks_them():
    from gvae.torch import distribution

    def marked():
        return 0

    def ours():
        return 0
    torch.compiler.assume_constant_result(marked)
    distribution._constant_result(ours)
    assert vars(ours) == vars(marked) == {"_dynamo_marked_constant": True}
    assert distribution._checked_offsets._dynamo_marked_constant and distribution._lattice_mask._dynamo_marked_constant


def test_bad_input_raises_clear_errors():
    F = raw_factor("grid", (3,), garbage=0.0)
    loc = torch.zeros(3, N, dtype=f64)
    with pytest.raises(TypeError, match="arguments must share one dtype, got loc torch.float32, factor torch.float64"):
        BandedPrecisionNormal(loc.float(), F, (0, 1, COLS))
    with pytest.raises(TypeError, match="loc and factor must be on one device, got loc on cpu, factor on meta"):
        BandedPrecisionNormal(loc, F.to("meta"), (0, 1, COLS))
    with pytest.raises(TypeError, match="factor has dtype torch.int64"):
        BandedPrecisionNormal(loc, F.long(), (0, 1, COLS))
    with pytest.raises(ValueError, match="with the same n"):
        BandedPrecisionNormal(loc[:, :5], F, (0, 1, COLS))
    with pytest.raises(ValueError, match="does not broadcast"):
        BandedPrecisionNormal(torch.zeros(4, N, dtype=f64), F, (0, 1, COLS))
    with pytest.raises(ValueError, match="BandedPrecisionNormal: L holds K=3 diagonals"):
        BandedPrecisionNormal(loc, F, (0, 1))
    with pytest.raises(ValueError, match=r"factor must have shape \(\*batch, 5, 12\)"):
        BandedPrecisionNormal.extgrid(loc, F, ROWS, COLS)
    with pytest.raises(ValueError, match="cols must be >= 3"):
        BandedPrecisionNormal.extgrid(loc, F, 6, 2)
    bad = F.clone()
    bad[0, 0, 3] = 0.0
    # validate_args explicitly: once torch.compile has run in a process, Dynamo turns the default off.
    with pytest.raises(ValueError, match="Expected parameter factor"):
        BandedPrecisionNormal(loc, bad, (0, 1, COLS), validate_args=True)
    # Without validation, the kernels still refuse the factor, naming the problem.
    q = BandedPrecisionNormal(loc, bad, (0, 1, COLS), validate_args=False)
    with pytest.raises(ValueError, match="the main diagonal L\\[..., 0, :\\] must be strictly positive"):
        q.entropy()
    good = BandedPrecisionNormal(loc, F, (0, 1, COLS))
    with pytest.raises(ValueError, match="the Normal's loc has 5 entries in its last axis"):
        kl_divergence(good, Normal(torch.zeros(5, dtype=f64), torch.ones(5, dtype=f64)))
    with pytest.raises(NotImplementedError, match=r"only Independent\(Normal, 1\)"):
        kl_divergence(good, Independent(Normal(torch.zeros(3, N, dtype=f64), torch.ones(3, N, dtype=f64)), 2))


def test_kl_against_a_non_positive_scale_is_refused_by_validation_and_nan_without_as_jax():
    """The behaviour gvae.jax's kl_to_diagonal follows: a ValueError where the scale can be read (here,
    the Normal's validation), NaN where it cannot (without validation; in JAX, under jit)."""
    q = BandedPrecisionNormal.chain(torch.zeros(3, N, dtype=f64), raw_factor("chain", (3,), garbage=0.0))
    with pytest.raises(ValueError, match="Expected parameter scale"):
        Normal(torch.zeros((), dtype=f64), torch.zeros((), dtype=f64), validate_args=True)
    for scale in (torch.zeros((), dtype=f64), torch.full((N,), -1.0, dtype=f64)):
        got = kl_divergence(q, Normal(torch.zeros((), dtype=f64), scale, validate_args=False))
        assert got.shape == (3,) and bool(got.isnan().all())


@pytest.mark.slow
def test_dense_views_beyond_free_memory_are_refused_before_allocating(monkeypatch):
    """covariance_matrix at n = 60,000 once ran into the out-of-memory killer: a dense view that cannot
    fit in the free memory is a ValueError naming its size, before anything is allocated. Shown here with
    n = 1500 against 30 MB free: its 18 MB matrix, 54 MB with its computation's temporaries."""
    from gvae.kernels.band import dense
    n = 1500
    # loc's batch of 4 broadcasts the shared factor: the view is expanded, its matrix stored once
    q = BandedPrecisionNormal.chain(torch.zeros(4, n, dtype=f64), torch.ones(2, n, dtype=f64))
    monkeypatch.setattr(dense, "free_memory", lambda: 30_000_000)
    for view in ("covariance_matrix", "precision_matrix"):
        with pytest.raises(ValueError, match=rf"^BandedPrecisionNormal\.{view}: the dense \(1500, 1500\) float64 "
                                             r"matrix needs 18 MB \(54 MB with the temporaries its computation "
                                             r"makes\), more than the 30 MB this machine has free; use the banded"):
            getattr(q, view)
    monkeypatch.setattr(dense, "free_memory", lambda: 60_000_000)
    assert q.precision_matrix.shape == (4, n, n) and q.precision_matrix[3, 1, 0] == 1.0
    monkeypatch.setattr(dense, "free_memory", lambda: 30_000_000)
    assert BandedPrecisionNormal.chain(torch.zeros(n // 2, dtype=f64),  # 4.5 MB: never read
                                       torch.ones(2, n // 2, dtype=f64)).covariance_matrix.shape == (n // 2, n // 2)


def test_the_readme_block_runs():
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"<!-- the block below runs in tests/test_torch_distribution.py -->\n```python\n(.*?)```",
                     text, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["z"].shape == (8, 16) and torch.isfinite(namespace["loss"])
    assert namespace["factor"].grad is not None and torch.isfinite(namespace["factor"].grad).all()
