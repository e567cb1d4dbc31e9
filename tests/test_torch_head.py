"""gvae.torch.band_head, a VAE step's sample, log-density and KL of a banded posterior in one operator:
the same values and derivatives (reverse, forward, torch.func, vmap, compile) as the three made of the
separate operators, gradients against finite differences in float64, and the clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="gvae.torch needs PyTorch (pip install gvae[torch])")

import gvae.torch as gt  # noqa: E402
from gvae.torch import autograd  # noqa: E402
from tests.band_reference import random_factor  # noqa: E402

STENCILS = {"diagonal": (0,), "chain": (0, 1), "grid": (0, 1, 4), "extgrid": (0, 1, 3, 4, 5), "wide": (0, 2, 3, 5, 6, 9, 10)}
N = 12
NORMAL = torch.distributions.Normal(0.0, 1.0)


def inputs(offsets, batch=(3,), samples=(2,), mu_batch=None, seed=0, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    L = torch.tensor(random_factor(rng, batch, offsets, N, garbage=0.0), dtype=dtype, requires_grad=True)
    mu = torch.tensor(rng.standard_normal((*(batch if mu_batch is None else mu_batch), N)), dtype=dtype,
                      requires_grad=True)
    eps = torch.tensor(rng.standard_normal((*samples, *batch, N)), dtype=dtype, requires_grad=True)
    return L, mu, eps


def separate(L, offsets, mu, eps):
    """The three as a VAE computes them with the separate operators."""
    q = gt.BandedPrecisionNormal(mu, L, offsets)
    z = mu + gt.band_solve_t(L, offsets, eps)
    return z, q.log_prob(z), torch.distributions.kl_divergence(q, NORMAL)


def weighted(outputs, weights):
    return sum((o * w).sum() for o, w in zip(outputs, weights))


@pytest.mark.parametrize("stencil", list(STENCILS))
@pytest.mark.parametrize("batch,samples,mu_batch", [((3,), (2,), None), ((), (4,), None), ((2, 3), (), None),
                                                    ((3,), (2, 1), (1,)), ((1,), (2, 3), (3,))])
def test_values_and_gradients_are_the_separate_operators(stencil, batch, samples, mu_batch):
    offsets = STENCILS[stencil]
    L, mu, eps = inputs(offsets, batch, samples, mu_batch)
    got, want = gt.band_head(L, offsets, mu, eps), separate(L, offsets, mu, eps)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-11)
    weights = [torch.randn_like(w) for w in want]
    for leave_out in (None, 0, 1, 2):  # an output that does not reach the loss gets no cotangent
        used = [k for k in range(3) if k != leave_out]
        ga = torch.autograd.grad(weighted([got[k] for k in used], [weights[k] for k in used]), (L, mu, eps),
                                 retain_graph=True)
        gb = torch.autograd.grad(weighted([want[k] for k in used], [weights[k] for k in used]), (L, mu, eps),
                                 retain_graph=True)
        for a, b in zip(ga, gb):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(stencil=st.sampled_from(list(STENCILS)), samples=st.sampled_from([(), (1,), (3,)]),
       batch=st.sampled_from([(), (2,)]), seed=st.integers(0, 2**16))
def test_gradcheck_reverse_and_forward_against_finite_differences(stencil, samples, batch, seed):
    offsets = STENCILS[stencil]
    L, mu, eps = inputs(offsets, batch, samples, seed=seed)
    f = lambda L, mu, eps: gt.band_head(L, offsets, mu, eps)  # noqa: E731
    assert torch.autograd.gradcheck(f, (L, mu, eps))
    assert torch.autograd.gradcheck(f, (L, mu, eps), check_forward_ad=True, check_backward_ad=False,
                                    check_undefined_grad=False)


def test_the_operator_path_equals_the_eager_path(monkeypatch):
    """The eager path (the CPU kernel inside an autograd.Function) and the dispatcher's operator give the
    same numbers and gradients."""
    offsets = STENCILS["extgrid"]
    L, mu, eps = inputs(offsets)
    eager = gt.band_head(L, offsets, mu, eps)
    g_eager = torch.autograd.grad(weighted(eager, [1.0, 1.0, 1.0]), (L, mu, eps))
    monkeypatch.setattr(autograd, "_plain", lambda tensors: False)
    op = gt.band_head(L, offsets, mu, eps)
    g_op = torch.autograd.grad(weighted(op, [1.0, 1.0, 1.0]), (L, mu, eps))
    for a, b in zip(eager + g_eager, op + g_op):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torch_func_grad_jacrev_jvp_and_vmap_equal_the_separate_operators():
    offsets = STENCILS["grid"]
    L, mu, eps = (t.detach() for t in inputs(offsets, (3,), (2,)))
    loss = lambda f: lambda L, mu: weighted(f(L, offsets, mu, eps), [0.3, 1.0, -0.7])  # noqa: E731
    for a, b in zip(torch.func.grad(loss(gt.band_head), argnums=(0, 1))(L, mu),
                    torch.func.grad(loss(separate), argnums=(0, 1))(L, mu)):
        torch.testing.assert_close(a, b)
    kl = lambda f: lambda L: f(L, offsets, mu, eps)[2]  # noqa: E731
    torch.testing.assert_close(torch.func.jacrev(kl(gt.band_head))(L), torch.func.jacrev(kl(separate))(L))
    dL = torch.randn_like(L)
    for a, b in zip(torch.func.jvp(lambda L: gt.band_head(L, offsets, mu, eps), (L,), (dL,))[1],
                    torch.func.jvp(lambda L: separate(L, offsets, mu, eps), (L,), (dL,))[1]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("in_dims", [(0, 0, 0), (0, None, None), (None, 0, None), (None, None, 1), (1, 0, 2)])
def test_vmap_and_the_vmapped_gradient_against_a_loop(in_dims):
    offsets = STENCILS["extgrid"]
    V = 4
    L, mu, eps = (t.detach() for t in inputs(offsets, (3, 5), (2,)))  # (3, 5, K, n): 3 per ... as needed
    args = []
    for t, d, single in zip((L, mu, eps), in_dims, (L[0], mu[0], eps[:, 0])):
        args.append(single if d is None else torch.stack([single * (1 + 0.1 * v) for v in range(V)], d))
    f = lambda L, mu, eps: gt.band_head(L, offsets, mu, eps)  # noqa: E731
    g = torch.func.grad(lambda L, mu, eps: weighted(f(L, mu, eps), [0.5, 1.0, 2.0]), argnums=(0, 1, 2))
    got, got_grad = torch.func.vmap(f, in_dims)(*args), torch.func.vmap(g, in_dims)(*args)
    for v in range(V):
        one = [a if d is None else a.select(d, v) for a, d in zip(args, in_dims)]
        for a, b in zip(got, f(*one)):
            torch.testing.assert_close(a[v] if a.dim() > b.dim() else a, b)
        for a, b in zip(got_grad, g(*one)):
            torch.testing.assert_close(a[v], b)


@pytest.mark.slow
def test_compiled_head_and_its_backward_equal_eager():
    offsets = STENCILS["chain"]
    L, mu, eps = inputs(offsets, dtype=torch.float32)

    def loss(L, mu, eps):
        z, log_q, kl = gt.band_head(L, offsets, mu, eps)
        return (z ** 2).sum() + log_q.sum() + kl.sum()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(L, mu, eps), (L, mu, eps))
    want = torch.autograd.grad(loss(L, mu, eps), (L, mu, eps))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_double_backward_refuses():
    offsets = STENCILS["chain"]
    L, mu, eps = inputs(offsets)
    g, = torch.autograd.grad(gt.band_head(L, offsets, mu, eps)[2].sum(), L, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward through band_head"):
        g.sum().backward()


def test_the_distributions_method_draws_and_scores_as_rsample_log_prob_and_kl():
    offsets = STENCILS["extgrid"]
    L, mu, _ = inputs(offsets)
    q = gt.BandedPrecisionNormal(mu, L, offsets)
    torch.manual_seed(5)
    z, log_q, kl = q.rsample_log_prob_kl((2,))
    torch.manual_seed(5)
    z2 = q.rsample((2,))
    torch.testing.assert_close(z, z2)
    torch.testing.assert_close(log_q, q.log_prob(z2))
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, NORMAL))


@pytest.mark.parametrize("call,error,match", [
    (lambda L, mu, eps: gt.band_head(L, (0, 1, 3, 4, 5), mu, eps[..., :5]), ValueError, "band_head: eps must have shape"),
    (lambda L, mu, eps: gt.band_head(L, (0, 1, 3, 4, 5), mu[..., :5], eps), ValueError, "band_head: mu must have shape"),
    (lambda L, mu, eps: gt.band_head(L, (0, 2), mu, eps), ValueError, "band_head: "),
    (lambda L, mu, eps: gt.band_head(L, (0, 1, 3, 4, 5), mu.float(), eps), TypeError, "share one dtype"),
    (lambda L, mu, eps: gt.band_head(-L, (0, 1, 3, 4, 5), mu, eps), ValueError, "strictly positive"),
])
def test_bad_input_raises_a_clear_error(call, error, match):
    L, mu, eps = (t.detach() for t in inputs(STENCILS["extgrid"]))
    with pytest.raises(error, match=match):
        call(L, mu, eps)
