"""gvae.torch.linalg: values against gvae.linalg (itself against SciPy), every derivative in both arguments
(reverse and forward mode, eigvals_banded's and cholesky_banded's included) against the dense torch.linalg computation in float64, torch.func.vmap,
torch.compile, CUDA tensors where there is a GPU, and the refusals."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="gvae.torch needs PyTorch (pip install gvae[torch])")

from gvae import linalg  # noqa: E402
from gvae.torch import linalg as tl  # noqa: E402
from tests.test_linalg import CASE, FUNCTIONS, call_banded, dense_reference, random_case  # noqa: E402


def call(name, params, *args, **kwargs):
    return call_banded(tl, name, params, *args, **kwargs)


@pytest.mark.parametrize("name", FUNCTIONS)
@settings(max_examples=10, deadline=None)
@given(**CASE, float32=st.booleans())
def test_values_are_gvae_linalgs(name, n, lower, upper, batches, k, seed, float32):
    params, arrays = random_case(np.random.default_rng(seed), name, n, lower, upper, batches, k)
    if float32:
        arrays = [a.astype(np.float32) for a in arrays]
    got = call(name, params, *(torch.from_numpy(a) for a in arrays))
    want = call_banded(linalg, name, params, *arrays)
    assert got.shape == want.shape and got.dtype == (torch.float32 if float32 else torch.float64)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6 if float32 else 1e-13, atol=1e-6 if float32 else 1e-13)


def _tensors(name, n, lower, upper, batches, k, seed):
    rng = np.random.default_rng(seed)
    params, arrays = random_case(rng, name, n, lower, upper, batches, k)
    tangents = [torch.from_numpy(rng.standard_normal(a.shape)) for a in arrays]
    return params, [torch.from_numpy(a).requires_grad_() for a in arrays], tangents


@pytest.mark.parametrize("name", FUNCTIONS)
@settings(max_examples=10, deadline=None)
@given(**CASE)
def test_gradients_are_the_dense_ones(name, n, lower, upper, batches, k, seed):
    """The gradients in ab and b of <w, f(ab, b)>, against torch.linalg on the dense matrix of the band
    (broadcast batches summed back to each argument's shape)."""
    params, inputs, _ = _tensors(name, n, lower, upper, batches, k, seed)
    out = call(name, params, *inputs)
    weights = torch.randn(out.shape, dtype=torch.float64)
    got = torch.autograd.grad((weights * out).sum(), inputs)
    want = torch.autograd.grad((weights * dense_reference(torch, name, params, *inputs)).sum(), inputs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", FUNCTIONS)
@settings(max_examples=10, deadline=None)
@given(**CASE)
def test_forward_mode_is_the_dense_jvp(name, n, lower, upper, batches, k, seed):
    params, inputs, tangents = _tensors(name, n, lower, upper, batches, k, seed)
    inputs = [a.detach() for a in inputs]
    _, got = torch.func.jvp(lambda *a: call(name, params, *a), tuple(inputs), tuple(tangents))
    _, want = torch.func.jvp(lambda *a: dense_reference(torch, name, params, *a), tuple(inputs), tuple(tangents))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_gradcheck_both_modes_and_one_argument_at_a_time():
    """torch.autograd.gradcheck, reverse and forward mode, with one argument or both requiring a gradient."""
    rng = np.random.default_rng(3)
    for name in ("solve_banded", "solveh_banded", "cho_solve_banded", "cholesky_banded", "eigvals_banded"):
        params, arrays = random_case(rng, name, 5, 1, 2, ((2,), (2,)), 2)
        for need in ((True, True), (True, False), (False, True))[:3 if len(arrays) == 2 else 1]:
            inputs = [torch.from_numpy(a).requires_grad_(r) for a, r in zip(arrays, need)]
            assert torch.autograd.gradcheck(lambda *a: call(name, params, *a), inputs, check_forward_ad=True)


def test_differentiates_once():
    rng = np.random.default_rng(0)
    params, (ab,) = random_case(rng, "logdeth_banded", 5, 0, 1, ((), ()), None)
    a = torch.from_numpy(ab).requires_grad_()
    g, = torch.autograd.grad(tl.logdeth_banded(a).sum(), a, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward through logdeth_banded is not offered"):
        g.sum().backward()


@pytest.mark.slow
def test_vmap_maps_onto_the_batch():
    """torch.func.vmap of a function, of its gradient and of a tangent equals the batched call (b matrices per
    example, which a mapped axis must not turn into vectors)."""
    rng = np.random.default_rng(1)
    params, (ab, b) = random_case(rng, "solveh_banded", 6, 0, 2, ((4,), (4,)), 3)
    ab, b = torch.from_numpy(ab), torch.from_numpy(b)
    got = torch.func.vmap(lambda a, c: tl.solveh_banded(a, c))(ab, b)
    torch.testing.assert_close(got, tl.solveh_banded(ab, b), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(torch.func.vmap(lambda a: tl.solveh_banded(a, b[0]))(ab),
                               tl.solveh_banded(ab, b[0].expand(b.shape)))

    def loss(a, c):
        return tl.logdeth_banded(a) + tl.solveh_banded(a, c).square().sum()
    got = torch.func.vmap(torch.func.grad(loss, argnums=(0, 1)))(ab, b)
    a, c = ab.clone().requires_grad_(), b.clone().requires_grad_()
    want = torch.autograd.grad(sum(loss(a[i], c[i]) for i in range(4)), (a, c))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    tangents = torch.randn(ab.shape, dtype=torch.float64)
    got = torch.func.vmap(lambda a, d: torch.func.jvp(tl.cholesky_banded, (a,), (d,))[1])(ab, tangents)
    torch.testing.assert_close(got, torch.func.jvp(tl.cholesky_banded, (ab,), (tangents,))[1], rtol=1e-14, atol=1e-14)


@pytest.mark.slow
def test_compiled_values_and_gradients_equal_eager():
    rng = np.random.default_rng(2)
    params, (ab, b) = random_case(rng, "solveh_banded", 8, 0, 2, ((3,), (3,)), None)

    def f(a, c):
        return tl.solveh_banded(a, c).square().sum() + tl.logdeth_banded(a).sum()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    results = []
    for fn in (compiled, f):
        a, c = torch.from_numpy(ab).requires_grad_(), torch.from_numpy(b).requires_grad_()
        value = fn(a, c)
        results.append((value, *torch.autograd.grad(value, (a, c))))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("call_, error, phrase", [
    (lambda: tl.solve_banded((1, 1), torch.ones(2, 5), torch.ones(5)), ValueError, "ab has 2 rows, but l = 1 and u = 1 need 3"),
    (lambda: tl.solve_banded((1, 1), torch.ones(3, 5), torch.ones(4)), ValueError, "does not match ab's n = 5"),
    (lambda: tl.solveh_banded(torch.ones(2, 4, dtype=torch.complex128), torch.ones(4)), TypeError, "complex"),
    (lambda: tl.cho_solve_banded(torch.ones(1, 3), torch.ones(3)), ValueError, "(cb, lower)"),
    (lambda: tl.logdeth_banded(torch.tensor([[0.5, 0.5], [1.0, -4.0]])), linalg.LinAlgError, "not positive definite"),
    (lambda: tl.cholesky_banded(torch.tensor([[1.0, float("nan")]])), ValueError, "must not contain infs or NaNs"),
    (lambda: tl.solveh_banded(torch.ones(2, 2, 3), torch.ones(3, 3)), ValueError, "do not broadcast"),
    (lambda: tl.eigvals_banded(torch.ones(2, 3), select="i", select_range=(0, 1)), ValueError, "take select='a'"),
])
def test_refusals_in_one_line(call_, error, phrase):
    with pytest.raises(error) as info:
        call_()
    assert phrase in str(info.value) and "\n" not in str(info.value)


def test_lists_and_integers_are_float64():
    x = tl.solve_banded((0, 0), [[2, 4]], torch.tensor([1, 2]))
    assert x.dtype == torch.float64 and x.tolist() == [0.5, 0.5]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_tensors_are_the_cpus():
    rng = np.random.default_rng(4)
    for name in (f for f in FUNCTIONS if f != "eigvals_banded"):  # (LAPACK's, on the host: refused below)
        params, arrays = random_case(rng, name, 9, 0, 2, ((3,), (3,)), 2)
        cpu = [torch.from_numpy(a).requires_grad_() for a in arrays]
        cuda = [a.detach().cuda().requires_grad_() for a in cpu]
        outs = [call(name, params, *ins) for ins in (cpu, cuda)]
        torch.testing.assert_close(outs[1].cpu(), outs[0], rtol=1e-10, atol=1e-10)
        grads = [torch.autograd.grad(o.square().sum(), ins) for o, ins in zip(outs, (cpu, cuda))]
        for g_cpu, g_cuda in zip(*grads):
            torch.testing.assert_close(g_cuda.cpu(), g_cpu, rtol=1e-10, atol=1e-10)
    with pytest.raises(TypeError, match="on NumPy arrays only"):
        tl.eigvals_banded(torch.ones(2, 4, device="cuda"))


@pytest.mark.slow
def test_importing_gvae_linalg_imports_neither_torch_nor_jax():
    code = ("import sys, gvae, gvae.linalg, gvae.rules.banded; "
            "assert 'torch' not in sys.modules and 'jax' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
