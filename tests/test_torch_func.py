"""gvae.torch under forward-mode AD and the torch.func transforms: every derivative against a dense float64
reference written in plain PyTorch (torch.linalg), and the one operator without a forward-mode rule
refusing it clearly instead of answering zero."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="gvae.torch needs PyTorch (pip install gvae[torch])")
import torch.autograd.forward_ad as fwAD  # noqa: E402
from torch.func import grad, jacfwd, jacrev, jvp, vmap  # noqa: E402

import gvae.torch as gt  # noqa: E402
from tests.band_reference import random_factor  # noqa: E402

N = 7
OFFS = (0, 1, 3)
VECTOR = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec"]


def factor(batch=(), seed=0):
    return torch.tensor(random_factor(np.random.default_rng(seed), batch, OFFS, N, garbage=0.0))


def dense(L):
    """The dense lower-triangular matrix of the band L (*batch, K, n), differentiable in L."""
    return sum(torch.diag_embed(L[..., k, o:], -o) for k, o in enumerate(OFFS))


def reference(name, L, v):
    """The dense float64 PyTorch computation of gvae's ``name``."""
    D = dense(L)
    col = v.unsqueeze(-1)
    if name == "band_solve_t":
        return torch.linalg.solve_triangular(D.mT, col, upper=True).squeeze(-1)
    if name == "band_solve":
        return torch.linalg.solve_triangular(D, col, upper=False).squeeze(-1)
    if name == "band_matvec_t":
        return (D.mT @ col).squeeze(-1)
    return (D @ col).squeeze(-1)


def gvae_call(name, L, v):
    return getattr(gt, name)(L, OFFS, v)


def op_call(name, L, v):
    return getattr(torch.ops.gvae, name)(L, OFFS, v)


def sigma(L):
    D = dense(L)
    return torch.linalg.inv(D @ D.mT)


@pytest.mark.parametrize("name", VECTOR)
def test_jacobians_forward_and_reverse_equal_the_dense_reference(name):
    L, b = factor(), torch.randn(N, dtype=torch.float64)
    for argnums in (0, 1):
        want = jacrev(lambda L, b: reference(name, L, b), argnums=argnums)(L, b)
        for transform in (jacfwd, jacrev):
            got = transform(lambda L, b: gvae_call(name, L, b), argnums=argnums)(L, b)
            # The band slots outside the matrix are not in the dense reference: zero in both.
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # The true Jacobian in b is the matrix itself (or its inverse): never zero.
    assert jacfwd(lambda b: gvae_call(name, L, b))(b).abs().max() > 0.1


@pytest.mark.parametrize("name", VECTOR)
def test_operators_called_directly_refuse_torch_func_derivatives_clearly(name):
    """torch.func enters an autograd.Function from the top, before the dispatcher; torch.ops.gvae.NAME's
    derivatives live below it, so they refuse there and name the function to call instead."""
    L, b = factor(), torch.randn(N, dtype=torch.float64)
    for transform in (jacfwd, jacrev):
        with pytest.raises(NotImplementedError, match=f"call gvae.torch.{name}"):
            transform(lambda b: op_call(name, L, b))(b)
    # Without a derivative, vmap maps the operator itself.
    bs = torch.randn(3, N, dtype=torch.float64)
    torch.testing.assert_close(vmap(lambda b: op_call(name, L, b))(bs), gvae_call(name, L, bs), rtol=0, atol=0)


@pytest.mark.parametrize("name", VECTOR)
def test_forward_ad_tangents_with_broadcast_and_both_inputs(name):
    L, b = factor((3,), seed=1), torch.randn(2, 1, N, dtype=torch.float64)
    dL, db = torch.randn_like(L), torch.randn_like(b)
    _, want = jvp(lambda L, b: reference(name, L, b), (L, b), (dL, db))
    for call in (gvae_call, op_call):
        with fwAD.dual_level():
            out = call(name, fwAD.make_dual(L, dL), fwAD.make_dual(b, db))
            tangent = fwAD.unpack_dual(out).tangent
        assert tangent is not None and tangent.shape == out.shape == (2, 3, N)
        torch.testing.assert_close(tangent, want, rtol=1e-10, atol=1e-12)
        # A tangent on one input only.
        with fwAD.dual_level():
            only_b = fwAD.unpack_dual(call(name, L, fwAD.make_dual(b, db))).tangent
        torch.testing.assert_close(only_b, jvp(lambda b: reference(name, L, b), (b,), (db,))[1],
                                   rtol=1e-10, atol=1e-12)


def test_forward_mode_of_the_factor_functions():
    L, dL = factor((2,), seed=2), torch.randn(2, len(OFFS), N, dtype=torch.float64)
    want_logdet = jvp(lambda L: torch.linalg.slogdet(dense(L))[1], (L,), (dL,))[1]
    want_trace = jvp(lambda L: sigma(L).diagonal(dim1=-2, dim2=-1).sum(-1), (L,), (dL,))[1]
    # (function, reference, whether torch.func may differentiate it: not the operator called directly)
    for f, want, func in ((lambda L: gt.band_logdet(L), want_logdet, True),
                          (lambda L: torch.ops.gvae.band_logdet(L), want_logdet, False),
                          (lambda L: gt.band_trace_inv(L, OFFS), want_trace, True)):
        if func:
            torch.testing.assert_close(jvp(f, (L,), (dL,))[1], want, rtol=1e-10, atol=1e-12)
        with fwAD.dual_level():
            tangent = fwAD.unpack_dual(f(fwAD.make_dual(L, dL))).tangent
        torch.testing.assert_close(tangent, want, rtol=1e-10, atol=1e-12)


def test_diag_inv_refuses_forward_mode_and_keeps_reverse_mode():
    L = factor((2,), seed=3)
    with pytest.raises(NotImplementedError, match="forward-mode derivatives of band_diag_inv are not offered"):
        jacfwd(lambda L: gt.band_diag_inv(L, OFFS))(L)
    with fwAD.dual_level(), pytest.raises(NotImplementedError, match="band_diag_inv"):
        gt.band_diag_inv(fwAD.make_dual(L, torch.ones_like(L)), OFFS)
    want = jacrev(lambda L: sigma(L).diagonal(dim1=-2, dim2=-1))(L)
    torch.testing.assert_close(jacrev(lambda L: gt.band_diag_inv(L, OFFS))(L), want, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_hessians_forward_over_reverse():
    """jacfwd(jacrev(f)) runs the forward-mode rules of the backward's operators (band_outer,
    band_logdet_grad, the solves and products)."""
    L, b = factor(seed=4), torch.randn(N, dtype=torch.float64)

    def loss(f):
        def scalar(L, b):
            x = f("band_solve_t", L, b)
            y = f("band_matvec", L, x) + f("band_solve", L, f("band_matvec_t", L, b))
            return (y * y).sum() + (x.sin()).sum()
        return scalar

    def with_logdet(L, b):
        return loss(gvae_call)(L, b) + 3 * gt.band_logdet(L)

    def with_logdet_ref(L, b):
        return loss(reference)(L, b) + 3 * torch.linalg.slogdet(dense(L))[1]

    for argnums in ((0,), (1,), (0, 1)):
        got = jacfwd(jacrev(with_logdet, argnums=argnums), argnums=argnums)(L, b)
        want = jacrev(jacrev(with_logdet_ref, argnums=argnums), argnums=argnums)(L, b)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", VECTOR + ["band_logdet", "band_trace_inv", "band_diag_inv"])
def test_func_grad_jacrev_and_vmap_grad_equal_autograd(name):
    L = factor((3,), seed=5)
    bs = torch.randn(4, 3, N, dtype=torch.float64)
    w = torch.linspace(-1, 1, 3 * N, dtype=torch.float64).reshape(3, N)

    def f(L, b):
        if name in VECTOR:
            return (gvae_call(name, L, b) * w).sum()
        out = gt.band_logdet(L) if name == "band_logdet" else getattr(gt, name)(L, OFFS)
        return (out * (w if out.dim() == 2 else w[:, 0])).sum() + (b * 0).sum()

    def autograd(L, b):
        L, b = L.detach().requires_grad_(), b.detach().requires_grad_()
        return torch.autograd.grad(f(L, b), (L, b), allow_unused=True, materialize_grads=True)

    for i in range(len(bs)):
        want = autograd(L, bs[i])
        got = grad(f, argnums=(0, 1))(L, bs[i])
        for g, h in zip(got, want, strict=True):
            torch.testing.assert_close(g, h, rtol=0, atol=1e-13)
    # jacrev of a scalar is its gradient; vmap(grad) maps over the right-hand sides.
    torch.testing.assert_close(jacrev(f)(L, bs[0]), autograd(L, bs[0])[0], rtol=0, atol=1e-13)
    mapped = vmap(grad(f, argnums=(0, 1)), in_dims=(None, 0))(L, bs)
    for i in range(len(bs)):
        for g, h in zip((mapped[0][i], mapped[1][i]), autograd(L, bs[i]), strict=True):
            torch.testing.assert_close(g, h, rtol=0, atol=1e-12)


def test_distribution_log_prob_forward_mode_in_loc_and_factor():
    n = N
    loc = torch.randn(3, n, dtype=torch.float64)
    F = torch.tensor(random_factor(np.random.default_rng(6), (), (0, 1), n, garbage=0.0))
    z = torch.randn(3, n, dtype=torch.float64)
    dloc, dF = torch.randn_like(loc), torch.randn_like(F)

    def log_prob(loc, F):
        return gt.BandedPrecisionNormal.chain(loc, F).log_prob(z)

    def log_prob_autograd(loc, F):
        loc, F = loc.detach().requires_grad_(), F.detach().requires_grad_()
        lp = log_prob(loc, F)
        rows = [torch.autograd.grad(lp[i], (loc, F), retain_graph=True) for i in range(len(lp))]
        return torch.stack([(gl * dloc).sum() + (gF * dF).sum() for gl, gF in rows])

    _, tangent = jvp(log_prob, (loc, F), (dloc, dF))
    want = log_prob_autograd(loc, F)
    assert want.abs().max() > 1e-3  # the tangent being checked is not zero
    torch.testing.assert_close(tangent, want, rtol=1e-10, atol=1e-12)
    with fwAD.dual_level():
        dual = fwAD.unpack_dual(log_prob(fwAD.make_dual(loc, dloc), fwAD.make_dual(F, dF))).tangent
    torch.testing.assert_close(dual, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("in_dims", [(0, 1, None), (0, None, None), (None, 1, None), (None, None, 0), (0, 1, 0)])
def test_vmap_rules_of_the_gradient_operators_equal_a_loop(in_dims):
    """band_outer (its samples in front of the factor batch summed) and the factor functions' gradient
    operators, mapped over any argument, against one call per mapped index."""
    V, ops = 3, torch.ops.gvae
    like = factor((2,), seed=7)
    a = torch.randn(V, 4, 2, N, dtype=torch.float64)
    c = torch.randn(4, V, 2, N, dtype=torch.float64)
    likes = torch.stack([factor((2,), seed=s) for s in range(V)])
    args = (a if in_dims[0] is not None else a[0], c if in_dims[1] is not None else c[:, 0],
            likes if in_dims[2] is not None else like)

    def pick(t, d, i):
        return t if d is None else t.select(d, i)

    got = vmap(lambda a, c, like: ops.band_outer(a, c, like, list(OFFS), -0.5), in_dims=in_dims)(*args)
    want = torch.stack([ops.band_outer(*(pick(t, d, i) for t, d in zip(args, in_dims)), list(OFFS), -0.5)
                        for i in range(V)])
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)

    Ls, gs = likes if in_dims[2] is not None else like, torch.randn(V, 2, dtype=torch.float64)
    gn = torch.randn(V, 2, N, dtype=torch.float64)
    dims = (in_dims[2], 0)
    for name, g in (("band_logdet_grad", gs), ("band_trace_inv_grad", gs), ("band_diag_inv_grad", gn)):
        op = getattr(ops, name)
        f = (lambda L, g: op(L, g)) if name == "band_logdet_grad" else (lambda L, g: op(L, list(OFFS), g))
        got = vmap(f, in_dims=dims)(Ls, g)
        want = torch.stack([f(pick(Ls, dims[0], i), g[i]) for i in range(V)])
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


@settings(deadline=None)
@given(seed=st.integers(0, 2 ** 16), batch=st.sampled_from([(), (2,)]), name=st.sampled_from(VECTOR))
def test_forward_rules_against_central_differences(seed, batch, name):
    """Every forward-mode rule of a solve or product: the tangent along a random direction of (L, b) equals
    the float64 central difference of the values along it."""
    gen = torch.Generator().manual_seed(seed)
    L = torch.tensor(random_factor(np.random.default_rng(seed), batch, OFFS, N, garbage=0.0))
    b = torch.randn(batch + (N,), dtype=torch.float64, generator=gen)
    dL = torch.randn(L.shape, dtype=torch.float64, generator=gen) * 0.1
    db = torch.randn(b.shape, dtype=torch.float64, generator=gen)
    _, tangent = jvp(lambda L, b: gvae_call(name, L, b), (L, b), (dL, db))
    h = 1e-6
    diff = (gvae_call(name, L + h * dL, b + h * db) - gvae_call(name, L - h * dL, b - h * db)) / (2 * h)
    torch.testing.assert_close(tangent, diff, rtol=1e-6, atol=1e-7)
