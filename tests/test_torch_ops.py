"""gvae.torch's operators: registrations (opcheck), gradients against finite differences, vmap, compile
and export, zero-copy on CPU, and the clear errors."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch", reason="gvae.torch needs PyTorch (pip install gvae[torch])")

from gvae import kernels  # noqa: E402
from gvae.kernels import band as kband  # noqa: E402
import gvae.torch as gt  # noqa: E402
from gvae.torch import autograd, bridge, checks, library  # noqa: E402
from tests.band_reference import random_factor  # noqa: E402

# The named stencils on a 3 x 4 lattice (n = 12).
STENCILS = {"chain": (0, 1), "grid": (0, 1, 4), "extgrid": (0, 1, 3, 4, 5)}
N = 12
VECTOR = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec"]
FACTOR = ["band_logdet", "band_trace_inv", "band_diag_inv"]


def factor(offsets, batch=(), seed=0, dtype=torch.float64, garbage=np.nan, requires_grad=False):
    """A well-conditioned random band factor as a tensor; the slots outside the matrix hold ``garbage``."""
    L = random_factor(np.random.default_rng(seed), batch, offsets, N, garbage=garbage)
    return torch.tensor(L, dtype=dtype, requires_grad=requires_grad)


def call(name, L, offsets, b=None):
    f = getattr(gt, name)
    if name == "band_logdet":
        return f(L)
    return f(L, offsets) if b is None else f(L, offsets, b)


# --------------------------------------------------------------------------------------------------
# Registrations
# --------------------------------------------------------------------------------------------------

def _opcheck_cases():
    offs = STENCILS["extgrid"]
    L = factor(offs, (3,), garbage=0.0, requires_grad=True)
    b = torch.randn(2, 3, N, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, dtype=torch.float64, requires_grad=True)
    op = torch.ops.gvae
    return {
        **{name: (getattr(op, name), (L, offs, b)) for name in VECTOR},
        "band_logdet": (op.band_logdet, (L,)),
        "band_trace_inv": (op.band_trace_inv, (L, offs)),
        "band_diag_inv": (op.band_diag_inv, (L, offs)),
        "band_outer": (op.band_outer, (b, torch.randn(3, N, dtype=torch.float64, requires_grad=True),
                                       L.detach(), offs, -1.0)),
        "band_logdet_grad": (op.band_logdet_grad, (L, g)),
        # Differentiable once only: their backward (a double backward) refuses, so no grad here.
        "band_trace_inv_grad": (op.band_trace_inv_grad, (L.detach(), offs, g.detach())),
        "band_diag_inv_grad": (op.band_diag_inv_grad, (L.detach(), offs, torch.randn(3, N, dtype=torch.float64))),
        "band_head": (op.band_head, (L, offs, torch.randn(3, N, dtype=torch.float64, requires_grad=True), b)),
        "band_head_grad": (op.band_head_grad, (L.detach(), offs, torch.randn(3, N, dtype=torch.float64),
                                               b.detach(), torch.randn(2, 3, N, dtype=torch.float64),
                                               torch.randn(2, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64))),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_opcheck_cases()))
def test_opcheck(name):
    op, args = _opcheck_cases()[name]
    torch.library.opcheck(op, args)


def test_export_traces_the_operators():
    offs = STENCILS["grid"]

    class Sample(torch.nn.Module):
        def forward(self, L, eps):
            return gt.band_solve_t(L, offs, eps), gt.band_diag_inv(L, offs)

    L, eps = factor(offs, (3,), garbage=0.0), torch.randn(5, 3, N, dtype=torch.float64)
    ep = torch.export.export(Sample(), (L, eps))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"gvae.band_solve_t.default", "gvae.band_diag_inv.default"} <= targets
    for got, want in zip(ep.module()(L, eps), Sample()(L, eps)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# Values and zero copy
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", VECTOR + FACTOR)
def test_values_are_the_kernels(name, dtype):
    offs = STENCILS["extgrid"]
    L = factor(offs, (2, 3), dtype=dtype)
    b = torch.randn(4, 1, 3, N, dtype=dtype)
    got = call(name, L, offs, b if name in VECTOR else None)
    args = (L.numpy(), offs, b.numpy()) if name in VECTOR else (L.numpy(),) if name == "band_logdet" else (L.numpy(), offs)
    want = getattr(kernels, name)(*args)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.numpy(), want)


def _spy(monkeypatch, name):
    """Replace gvae.kernels.band.NAME by a wrapper that records the arrays it gets and returns."""
    seen = {}
    real = getattr(kband, name)

    def spy(*args, **kwargs):
        seen["args"] = args
        seen["out"] = real(*args, **kwargs)
        return seen["out"]
    monkeypatch.setattr(kband, name, spy)
    return seen


@pytest.mark.parametrize("name", VECTOR)
def test_cpu_tensors_reach_the_kernel_without_a_copy(monkeypatch, name):
    offs = STENCILS["grid"]
    L = factor(offs, (3,), requires_grad=True)
    b = torch.randn(2, 3, N, dtype=torch.float64)
    seen = _spy(monkeypatch, name)
    y = call(name, L, offs, b)
    L_np, _, b_np = seen["args"]
    # The kernel reads the tensors' own memory and its output is the tensor returned.
    assert L_np.ctypes.data == L.data_ptr() and b_np.ctypes.data == b.data_ptr()
    assert seen["out"].ctypes.data == y.data_ptr()
    # The kernel sees the writes made through the tensor afterwards: the same memory, not a snapshot.
    with torch.no_grad():
        b.mul_(2)
    np.testing.assert_array_equal(b_np, b.numpy())


def test_gradient_kernels_work_in_place_of_the_tensors(monkeypatch):
    offs = STENCILS["chain"]
    L = factor(offs, (3,), requires_grad=True)
    seen = _spy(monkeypatch, "band_diag_inv_grad")
    gt.band_diag_inv(L, offs).sum().backward()
    L_np, _, g_np = seen["args"]
    assert L_np.ctypes.data == L.data_ptr()
    assert seen["out"].ctypes.data == L.grad.data_ptr()


@pytest.mark.slow
def test_non_contiguous_inputs():
    offs = STENCILS["extgrid"]
    Lt = factor(offs, (3,)).transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()  # (3, K, n), strided
    bt = torch.randn(N, 3, 2, dtype=torch.float64).permute(2, 1, 0).requires_grad_()  # (2, 3, n), strided
    assert not Lt.is_contiguous() and not bt.is_contiguous()
    for name in VECTOR:
        y = call(name, Lt, offs, bt)
        torch.testing.assert_close(y, call(name, Lt.contiguous(), offs, bt.contiguous()), rtol=0, atol=0)
        torch.autograd.gradcheck(lambda L, b: call(name, L, offs, b), (Lt, bt))
    for name in FACTOR:
        torch.autograd.gradcheck(lambda L: call(name, L, offs), (Lt,))


# --------------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------------

# (factor batch, right-hand side lead): equal, samples in front, the factor broadcast along an axis of
# size 1, the right-hand side broadcast against the factor batch.
# The largest (1.7-2.4 s a stencil) is left to the full suite.
SHAPES = [((), ()), ((3,), (3,)), ((2, 3), (2, 3)), pytest.param((3,), (2, 3), marks=pytest.mark.slow),
          ((1, 3), (2, 1)), ((2, 3), ())]


@pytest.mark.parametrize("stencil", list(STENCILS))
@pytest.mark.parametrize("batch,lead", SHAPES)
def test_gradcheck_solves_and_products(stencil, batch, lead):
    offs = STENCILS[stencil]
    L = factor(offs, batch, garbage=0.0, requires_grad=True)
    b = torch.randn(*lead, N, dtype=torch.float64, requires_grad=True)
    # The full Jacobians (and second derivatives) once per stencil, on samples sharing a factor; fast
    # mode (random projections of the Jacobian) on the other shapes, to keep the test quick.
    full = (batch, lead) == ((3,), (2, 3))
    for name in VECTOR:
        f = lambda L, b, name=name: call(name, L, offs, b)  # noqa: E731
        assert torch.autograd.gradcheck(f, (L, b), fast_mode=not full)
        assert torch.autograd.gradgradcheck(f, (L, b), fast_mode=not full)


@pytest.mark.parametrize("stencil", list(STENCILS))
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_gradcheck_factor_functions(stencil, batch):
    offs = STENCILS[stencil]
    L = factor(offs, batch, garbage=0.0, requires_grad=True)
    full = batch == (3,)
    for name in FACTOR:
        assert torch.autograd.gradcheck(lambda L, name=name: call(name, L, offs), (L,), fast_mode=not full)
    assert torch.autograd.gradgradcheck(gt.band_logdet, (L,), fast_mode=not full)


def test_slots_outside_the_matrix_get_no_gradient():
    offs = STENCILS["extgrid"]
    L = factor(offs, (3,), garbage=7.0, requires_grad=True)
    b = torch.randn(3, N, dtype=torch.float64)
    loss = sum(call(name, L, offs, b).sum() for name in VECTOR) + sum(call(n, L, offs).sum() for n in FACTOR)
    loss.backward()
    for k, o in enumerate(offs):
        assert torch.all(L.grad[:, k, :o] == 0)


@pytest.mark.parametrize("name", ["band_trace_inv", "band_diag_inv"])
def test_double_backward_of_the_selected_inversion_refuses(name):
    offs = STENCILS["grid"]
    L = factor(offs, (3,), garbage=0.0, requires_grad=True)
    (g,) = torch.autograd.grad(call(name, L, offs).sum(), L, create_graph=True)
    with pytest.raises(NotImplementedError, match=f"double backward through {name} is not offered"):
        g.sum().backward()


# --------------------------------------------------------------------------------------------------
# The eager path: the same kernels and backward without the dispatcher
# --------------------------------------------------------------------------------------------------

def _through_operators(monkeypatch):
    """Make every gvae.torch call go through torch.ops.gvae (the eager path disabled)."""
    monkeypatch.setattr(autograd, "_plain", lambda tensors: False)


@pytest.mark.parametrize("name", VECTOR + FACTOR)
def test_eager_path_equals_the_operator_to_second_order(monkeypatch, name):
    offs = STENCILS["extgrid"]
    L = factor(offs, (3,), garbage=0.0, requires_grad=True)
    b = torch.randn(2, 3, N, dtype=torch.float64, requires_grad=True)
    inputs = (L, b) if name in VECTOR else (L,)

    def derivatives():
        out = call(name, L, offs, b if name in VECTOR else None)
        w = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)
        first = torch.autograd.grad((out * w).sum(), inputs, create_graph=True)
        # Second order where it is offered: the selected inversion's backward refuses it.
        second = () if name in ("band_trace_inv", "band_diag_inv") else \
            torch.autograd.grad(sum((g * g).sum() for g in first), inputs)
        return (out, *first, *second)

    eager = derivatives()
    _through_operators(monkeypatch)
    for got, want in zip(eager, derivatives(), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_eager_calls_skip_the_dispatcher_and_modes_see_the_operators(monkeypatch):
    from torch.utils._python_dispatch import TorchDispatchMode
    offs = STENCILS["chain"]
    L = factor(offs, (3,), garbage=0.0, requires_grad=True)
    b = torch.randn(3, N, dtype=torch.float64)

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(str(func))
            return func(*args, **(kwargs or {}))

    # Plain eager calls, with and without a gradient, never reach the operator...
    monkeypatch.setitem(library._OPS, "band_solve_t", None)
    gt.band_solve_t(L, offs, b).sum().backward()
    with torch.no_grad():
        gt.band_solve_t(L, offs, b)
    monkeypatch.undo()
    # ...while a dispatch mode (a profiler, a tracer) sees every operator, the backward's included.
    with Seen() as mode:
        gt.band_solve_t(L, offs, b).sum().backward()
    assert {"gvae.band_solve_t.default", "gvae.band_solve.default", "gvae.band_outer.default"} <= mode.names


# --------------------------------------------------------------------------------------------------
# vmap and compile
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", VECTOR)
@pytest.mark.parametrize("in_dims", [(0, 0), (0, None), (None, 0), (1, 2)])
def test_vmap_against_a_loop(name, in_dims):
    offs = STENCILS["extgrid"]
    V = 4
    L = factor(offs, (V, 3)).movedim(0, in_dims[0]) if in_dims[0] is not None else factor(offs, (3,))
    b = torch.randn(V, 2, 3, N, dtype=torch.float64).movedim(0, in_dims[1]) if in_dims[1] is not None \
        else torch.randn(N, dtype=torch.float64)
    got = torch.func.vmap(lambda L, b: call(name, L, offs, b), in_dims=in_dims)(L, b)
    pick = lambda t, d, i: t if d is None else t.select(d, i)  # noqa: E731
    want = torch.stack([call(name, pick(L, in_dims[0], i), offs, pick(b, in_dims[1], i)) for i in range(V)])
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("name", FACTOR)
def test_vmap_factor_functions(name):
    offs = STENCILS["grid"]
    L = factor(offs, (2, 4))
    got = torch.func.vmap(lambda L: call(name, L, offs), in_dims=1)(L)
    want = torch.stack([call(name, L[:, i], offs) for i in range(4)])
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.slow
def test_compiled_operators_and_their_backward_equal_eager():
    offs = STENCILS["extgrid"]

    def f(L, b):
        x = gt.band_solve_t(L, offs, b)
        y = gt.band_matvec(L, offs, gt.band_solve(L, offs, x)) + gt.band_matvec_t(L, offs, b)
        return (y.square().sum() + gt.band_logdet(L).sum() + gt.band_trace_inv(L, offs).sum()
                + gt.band_diag_inv(L, offs).sum())

    L = factor(offs, (3,), garbage=0.0, requires_grad=True)
    b = torch.randn(2, 3, N, dtype=torch.float64, requires_grad=True)
    # aot_eager: Dynamo and AOTAutograd trace the operators and their backward through the fake
    # implementations (the distribution's test compiles with Inductor).
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got, want = compiled(L, b), f(L, b)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    for g, h in zip(torch.autograd.grad(got, (L, b)), torch.autograd.grad(want, (L, b))):
        torch.testing.assert_close(g, h, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# Errors: one clear line naming the argument, eager and traced
# --------------------------------------------------------------------------------------------------

def _bad_calls():
    offs = STENCILS["grid"]
    L = factor(offs, (3,))
    b = torch.randn(3, N, dtype=torch.float64)
    neg = L.clone()
    neg[1, 0, 5] = -1.0
    return [
        ("dtype of L", lambda: gt.band_solve_t(L.to(torch.bfloat16), offs, b), TypeError,
         "band_solve_t: L has dtype torch.bfloat16, expected torch.float32 or torch.float64"),
        ("integer b", lambda: gt.band_matvec(L, offs, b.long()), TypeError, "band_matvec: x has dtype torch.int64"),
        ("mixed dtypes", lambda: gt.band_solve(L, offs, b.float()), TypeError, "band_solve: arguments must share one dtype"),
        ("b a list", lambda: gt.band_solve_t(L, offs, b.tolist()), TypeError,
         "band_solve_t: b must be a torch.Tensor, got builtins.list"),
        ("L a NumPy array", lambda: gt.band_logdet(L.numpy()), TypeError,
         "band_logdet: L must be a torch.Tensor, got numpy.ndarray"),
        ("x a NumPy array, with a gradient",
         lambda: gt.band_matvec(L.detach().requires_grad_(), offs, b.numpy()), TypeError,
         "band_matvec: x must be a torch.Tensor, got numpy.ndarray"),
        ("length of b", lambda: gt.band_solve_t(L, offs, b[:, :5]), ValueError, "band_solve_t: b has length 5"),
        ("batch of b", lambda: gt.band_solve_t(L, offs, torch.randn(4, N, dtype=torch.float64)), ValueError,
         "do not broadcast"),
        ("offsets", lambda: gt.band_trace_inv(L, (0, 1)), ValueError, "band_trace_inv: L holds K=3 diagonals"),
        ("offsets order", lambda: gt.band_diag_inv(L, (0, 4, 1)), ValueError, "strictly increasing"),
        ("shape of L", lambda: gt.band_logdet(L[0, 0]), ValueError, "band_logdet L: expected at least 2"),
        ("diagonal", lambda: gt.band_solve_t(neg, offs, b), ValueError,
         r"band_solve_t: the main diagonal L\[..., 0, :\] must be strictly positive \(1 entries are not\)"),
        ("diagonal", lambda: gt.band_logdet(neg), ValueError, "band_logdet: the main diagonal"),
        ("NaN", lambda: gt.band_matvec_t(L, offs, b * np.nan), ValueError, "band_matvec_t: x contains NaN or inf"),
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0, 1, 2, 3]), max_size=4).map(tuple), min_size=1, max_size=3))
def test_broadcast_of_int_shapes_is_torchs(shapes):
    try:
        expected = tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError:
        with pytest.raises(RuntimeError, match="do not broadcast"):
            checks._broadcast_shapes(*shapes)
    else:
        assert checks._broadcast_shapes(*[torch.Size(s) for s in shapes]) == expected


@pytest.mark.parametrize("case", _bad_calls(), ids=lambda c: c[0])
def test_bad_input_raises_a_clear_error(case):
    _, f, error, message = case
    with pytest.raises(error, match=message):
        f()


def test_bad_shapes_raise_clear_errors_while_tracing():
    offs = STENCILS["grid"]
    L = torch.empty(3, 3, N, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match=r"band_solve_t: b must have shape \(\*lead, n\) with n=12"):
        gt.band_solve_t(L, offs, torch.empty(3, 5, dtype=torch.float64, device="meta"))
    with pytest.raises(ValueError, match="band_solve: b's batch shape"):
        gt.band_solve(L, offs, torch.empty(4, N, dtype=torch.float64, device="meta"))
    with pytest.raises(ValueError, match="band_diag_inv: L holds K=3 diagonals"):
        gt.band_diag_inv(L, (0, 1))
    with pytest.raises(TypeError, match="band_logdet: L has dtype torch.float16"):
        gt.band_logdet(L.half())


@pytest.mark.slow
@pytest.mark.parametrize("dynamic", [None, True])
def test_bad_arguments_under_torch_compile_keep_gvaes_exception(dynamic):
    """Under torch.compile the checks run in the traced Python, so the caller gets gvae's own TypeError or
    ValueError (raised from the fake implementation, Dynamo would wrap it in its TorchRuntimeError)."""
    offs = STENCILS["grid"]
    L, b = factor(offs, (3,), garbage=0.0), torch.randn(3, N, dtype=torch.float64)
    gt.band_solve_t(L, offs, b)  # the offsets' check cached, as after any earlier call (see the closing note)
    cases = [(lambda L, b: gt.band_solve_t(L, offs, b[..., :5]), ValueError,
              r"band_solve_t: b (must have shape|has length 5)"),
             (lambda L, b: gt.band_trace_inv(L, (0, 1)), ValueError, "band_trace_inv: L holds K=3 diagonals"),
             (lambda L, b: gt.band_logdet(L.half()), TypeError, "band_logdet: L has dtype torch.float16"),
             (lambda L, b: gt.band_matvec(L, offs, b.float()), TypeError, "band_matvec: arguments must share")]
    for f, error, message in cases:
        torch._dynamo.reset()
        with pytest.raises(error, match=message):
            torch.compile(f, dynamic=dynamic, backend="aot_eager")(L, b)
    torch._dynamo.reset()
    # The checks leave a good call's graph whole: fullgraph compiles, and the value is eager's.
    good = torch.compile(lambda L, b: gt.band_solve_t(L, offs, b), fullgraph=True, dynamic=dynamic,
                         backend="aot_eager")
    torch.testing.assert_close(good(L, b), gt.band_solve_t(L, offs, b), rtol=0, atol=0)


def test_tensors_on_different_devices_are_refused_clearly():
    # No GPU here: the device check of the CUDA kernel (where the dispatcher sends a call mixing CPU and
    # CUDA tensors) is run on a CPU and a meta tensor (tests/test_torch_cuda.py has the rest).
    L, b = factor(STENCILS["chain"]), torch.randn(N, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match=r"band_solve_t: the tensor arguments must be on one CUDA device, "
                                         r"got L on cpu, b on meta"):
        bridge._cuda_device("band_solve_t", [("L", L), ("offsets", (0, 1)), ("b", b)])


@pytest.mark.slow
def test_importing_gvae_does_not_import_torch():
    code = ("import sys, gvae, gvae.kernels, gvae.ops, gvae.model; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
