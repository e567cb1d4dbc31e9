"""gvae.torch on CUDA tensors: the plumbing (CuPy imported late, the device check, PyTorch's stream and
allocator handed to CuPy, DLPack views) against a fake CuPy on any machine, and every operator, its
gradients, streams, memory, BandedPrecisionNormal and torch.compile on a GPU against the CPU operators
(skipped without a CUDA GPU that both PyTorch and CuPy see)."""
import gc
import re
import sys
import types
import weakref

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gvae.torch needs PyTorch (pip install gvae[torch])")

import gvae.torch as gt  # noqa: E402
from gvae.kernels import band as kband  # noqa: E402
from gvae.kernels.backend import CUDA_INSTALL  # noqa: E402
from gvae.torch import bridge, library  # noqa: E402
from tests.band_reference import named_offsets, random_factor  # noqa: E402


# --------------------------------------------------------------------------------------------------
# The plumbing, against a fake CuPy (no GPU needed)
# --------------------------------------------------------------------------------------------------

class _FakeCupy(types.ModuleType):
    """The parts of ``cupy`` that gvae.torch touches, recording in ``log`` what is entered and left, and
    what ``from_dlpack`` and ``ndarray`` get (converted to NumPy, so that gvae's CPU kernels can run on it)."""

    def __init__(self):
        super().__init__("cupy")
        self.log, self.allocator, self.stream = [], None, None
        fake = self

        class Context:
            def __init__(self, *what):
                self.what = what

            def __enter__(self):
                fake.log.append(("enter",) + self.what)

            def __exit__(self, *exc):
                fake.log.append(("exit",) + self.what)

        class ExternalStream(Context):
            def __init__(self, ptr, device_id=-1):
                super().__init__("stream", ptr, device_id)

            def __enter__(self):
                super().__enter__()
                fake.stream = self.what[1:]

            def __exit__(self, *exc):
                super().__exit__()
                fake.stream = None

        class using_allocator(Context):  # noqa: N801  (cupy's spelling)
            def __init__(self, alloc):
                super().__init__("allocator")
                self.alloc = alloc

            def __enter__(self):
                super().__enter__()
                fake.allocator = self.alloc

            def __exit__(self, *exc):
                super().__exit__()
                fake.allocator = None

        class UnownedMemory:
            def __init__(self, ptr, size, owner, device_id=-1):
                self.ptr, self.size, self._owner, self.device_id = ptr, size, owner, device_id

        class MemoryPointer:
            def __init__(self, mem, offset):
                self.mem, self.ptr = mem, mem.ptr + offset

        self.cuda = types.SimpleNamespace(Device=lambda index: Context("device", index),
                                          ExternalStream=ExternalStream, using_allocator=using_allocator,
                                          UnownedMemory=UnownedMemory, MemoryPointer=MemoryPointer)

    def from_dlpack(self, t):
        self.log.append(("wrap", t, self.stream, self.allocator is not None))
        return t.numpy()

    def ndarray(self, shape, dtype, memptr):
        """CuPy's array over ``memptr``: here the NumPy view of the tensor that owns the memory, checked to
        be the whole of it."""
        t = memptr.mem._owner
        assert memptr.ptr == t.data_ptr() and memptr.mem.size == t.numel() * t.element_size()
        assert memptr.mem.device_id == t.device.index and str(t.dtype) == f"torch.{dtype}"
        self.log.append(("wrap", t, self.stream, self.allocator is not None))
        return t.numpy().reshape(shape)


def _on(device, t):
    """The CPU tensor ``t`` saying that it is on ``device`` (all that gvae.torch reads of its device)."""
    cls = type("OnDevice", (torch.Tensor,), {"device": property(lambda self: torch.device(device))})
    return torch.Tensor._make_subclass(cls, t)


def test_missing_cupy_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(RuntimeError, match="CUDA tensors need CuPy.*" + re.escape(CUDA_INSTALL)):
        bridge._cupy()


def test_cupy_is_imported_only_when_a_cuda_tensor_arrives(monkeypatch):
    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert bridge._cupy() is fake
    # CPU tensors never ask for it: with CuPy missing they run as before.
    monkeypatch.setitem(sys.modules, "cupy", None)
    L, x = random_factor(np.random.default_rng(0), (), (0, 1), 6), np.ones(6)
    np.testing.assert_array_equal(gt.band_matvec(torch.tensor(L), (0, 1), torch.tensor(x)).numpy(),
                                  kband.band_matvec(L, (0, 1), x))


def test_tensors_on_several_devices_are_named_in_the_error():
    a, c = torch.ones(4), torch.ones(4, device="meta")
    like = torch.ones(2, 4)
    with pytest.raises(ValueError, match=r"band_outer: the tensor arguments must be on one CUDA device, got "
                                         r"a on cpu, c on meta, like on cpu; move them"):
        bridge._cuda_device("band_outer", [("a", a), ("c", c), ("like", like), ("offsets", (0, 1)), ("scale", 1.0)])
    # Two GPUs are two devices too; one GPU is the answer.
    L, b = _on("cuda:0", torch.ones(2, 4)), _on("cuda:1", torch.ones(4))
    with pytest.raises(ValueError, match=r"got L on cuda:0, b on cuda:1"):
        bridge._cuda_device("band_solve", [("L", L), ("offsets", (0, 1)), ("b", b)])
    assert bridge._cuda_device("band_solve", [("L", L), ("offsets", (0, 1)), ("b", _on("cuda:0", b))]) == \
        torch.device("cuda", 0)
    # Only CPU tensors (the dispatcher never sends them to the CUDA kernel) are refused alike.
    with pytest.raises(ValueError, match=r"got L on cpu"):
        bridge._cuda_device("band_logdet", [("L", torch.ones(1, 3))])


@pytest.mark.parametrize("index, ptr", [(0, 0), (1, 0x7F00AB), (3, 12345)])
def test_cupy_runs_on_pytorchs_device_stream_and_allocator(index, ptr):
    fake = _FakeCupy()
    stream = types.SimpleNamespace(cuda_stream=ptr)
    with bridge._on_stream(fake, torch.device("cuda", index), stream):
        assert fake.stream == (ptr, index) and callable(fake.allocator)
        inside = list(fake.log)
    assert inside == [("enter", "device", index), ("enter", "stream", ptr, index), ("enter", "allocator")]
    # Left in reverse order, CuPy's own stream and allocator back in place.
    assert fake.log[3:] == [("exit", "allocator"), ("exit", "stream", ptr, index), ("exit", "device", index)]
    assert fake.stream is None and fake.allocator is None


@pytest.mark.parametrize("nbytes", [0, 1, 4096])
def test_allocations_come_from_pytorch_and_are_freed_with_their_owner(nbytes):
    fake = _FakeCupy()
    # A CPU device with an index stands for a GPU: the allocator only asks torch.empty for the bytes.
    device = torch.device("cpu", 0)
    memptr = bridge._allocator(fake, device)(nbytes)
    owner = memptr.mem._owner
    assert type(owner) is torch.Tensor and owner.dtype == torch.uint8 and owner.numel() == nbytes
    assert owner.device == torch.device("cpu")
    assert memptr.ptr == memptr.mem.ptr == owner.data_ptr() and memptr.mem.size == nbytes
    assert memptr.mem.device_id == 0
    alive = weakref.ref(owner)
    del owner
    gc.collect()
    assert alive() is not None  # CuPy's memory keeps PyTorch's block
    del memptr
    gc.collect()
    assert alive() is None  # and gives it back when it dies


def test_tensors_reach_cupy_detached_and_contiguous_without_a_copy_where_possible():
    fake = _FakeCupy()
    t = torch.randn(3, 4, dtype=torch.float64)
    bridge._to_cupy(fake, t)
    seen = fake.log[-1][1]
    assert seen.data_ptr() == t.data_ptr()
    # A strided view that needs a gradient: one contiguous copy, detached (DLPack refuses requires_grad).
    s = torch.randn(4, 3, dtype=torch.float64, requires_grad=True).mT
    bridge._to_cupy(fake, s)
    seen = fake.log[-1][1]
    assert seen.is_contiguous() and not seen.requires_grad and torch.equal(seen, s.detach())


@pytest.mark.parametrize("name", ["band_solve_t", "band_matvec", "band_logdet", "band_diag_inv"])
def test_cuda_kernel_converts_and_launches_inside_pytorchs_stream(monkeypatch, name):
    """The registered CUDA kernel end to end, with the fake CuPy handing NumPy arrays to gvae's CPU
    kernels: every conversion happens on PyTorch's current stream of the tensors' device, with PyTorch's
    allocator, and the value is the CPU operator's."""
    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    asked = []
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: asked.append(device) or
                        types.SimpleNamespace(cuda_stream=0xBEEF))
    offs = (0, 1, 3)
    L = torch.tensor(random_factor(np.random.default_rng(1), (2,), offs, 8))
    b = torch.randn(3, 2, 8, dtype=torch.float64)
    args = {"band_logdet": (L,), "band_diag_inv": (L, offs)}.get(name, (L, offs, b))
    on_gpu = [_on("cuda:2", a) if isinstance(a, torch.Tensor) else a for a in args]
    got = library._CUDA[name](*on_gpu)
    torch.testing.assert_close(got, getattr(torch.ops.gvae, name)(*args), rtol=0, atol=0)
    assert asked == [torch.device("cuda", 2)]
    conversions = [e for e in fake.log if e[0] == "wrap"]
    assert len(conversions) == sum(isinstance(a, torch.Tensor) for a in args)
    assert all(stream == (0xBEEF, 2) and allocator for _, _, stream, allocator in conversions)
    assert fake.log[0] == ("enter", "device", 2) and fake.log[-1] == ("exit", "device", 2)


# --------------------------------------------------------------------------------------------------
# On a GPU: every operator against the CPU
# --------------------------------------------------------------------------------------------------

def _why_no_gpu():
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA GPU"
    try:
        import cupy
    except ImportError as e:
        return f"CuPy cannot be imported ({e}): {CUDA_INSTALL}"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "CuPy sees no CUDA GPU"
    except Exception as e:  # noqa: BLE001  (CUDARuntimeError without a driver, and the like)
        return f"CuPy cannot reach a GPU ({e})"
    return None


NO_GPU = _why_no_gpu()
gpu = pytest.mark.skipif(NO_GPU is not None, reason=f"needs a CUDA GPU seen by PyTorch and CuPy: {NO_GPU}")
N = 20
OFFSETS = {name: named_offsets(name, N) for name in ("chain", "grid", "extgrid")}
VECTOR = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec"]
FACTOR = ["band_logdet", "band_trace_inv", "band_diag_inv"]
# (factor batch, right-hand-side lead): plain, shared factor, samples over a batch, broadcast both ways.
BATCHES = [((), (3,)), ((4,), (4,)), ((4,), (2, 4)), ((2, 1), (3,))]
DTYPES = [torch.float32, torch.float64]


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)


def _factor(offsets, batch, dtype, seed=0, garbage=0.0):
    """A well-conditioned random factor (float64 values rounded to ``dtype``) on the CPU."""
    return torch.tensor(random_factor(np.random.default_rng(seed), batch, offsets, N, garbage=garbage), dtype=dtype)


def _args(name, L, offsets, b):
    return (L,) if name == "band_logdet" else (L, offsets) if name in FACTOR else (L, offsets, b)


def _close(got, want, dtype, device):
    assert got.device == device and got.dtype == want.dtype
    torch.testing.assert_close(got.cpu(), want, **_tol(dtype))


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, lead", BATCHES)
@pytest.mark.parametrize("stencil", sorted(OFFSETS))
@pytest.mark.parametrize("name", VECTOR + FACTOR)
def test_every_operator_on_cuda_matches_the_cpu(name, stencil, batch, lead, dtype):
    offs, dev = OFFSETS[stencil], torch.device("cuda", torch.cuda.current_device())
    # NaN in the slots outside the matrix: the CUDA kernels must not read them either.
    L, b = _factor(offs, batch, dtype, garbage=np.nan), torch.randn(lead + (N,), dtype=dtype)
    f = getattr(gt, name)
    _close(f(*_args(name, L.to(dev), offs, b.to(dev))), f(*_args(name, L, offs, b)), dtype, dev)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_vjp_operators_on_cuda_match_the_cpu(dtype):
    offs, dev = OFFSETS["extgrid"], torch.device("cuda", torch.cuda.current_device())
    L = _factor(offs, (3,), dtype)
    a, c, g = torch.randn(2, 3, N, dtype=dtype), torch.randn(3, N, dtype=dtype), torch.randn(3, dtype=dtype)
    gv = torch.randn(3, N, dtype=dtype)
    calls = [("band_outer", (a, c, L, offs, 0.5)), ("band_logdet_grad", (L, g)),
             ("band_trace_inv_grad", (L, offs, g)), ("band_diag_inv_grad", (L, offs, gv))]
    for name, args in calls:
        op = getattr(torch.ops.gvae, name)
        on_gpu = [x.to(dev) if isinstance(x, torch.Tensor) else x for x in args]
        _close(op(*on_gpu), op(*args), dtype, dev)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", VECTOR + FACTOR)
def test_gradients_on_cuda_match_the_cpu(name, dtype):
    offs, dev = OFFSETS["grid"], torch.device("cuda", torch.cuda.current_device())
    L0, b0 = _factor(offs, (3,), dtype), torch.randn(2, 3, N, dtype=dtype)
    f = getattr(gt, name)

    def grads(device):
        L, b = L0.to(device).requires_grad_(), b0.to(device).requires_grad_()
        y = f(*_args(name, L, offs, b))
        w = torch.linspace(-1, 1, y.numel(), dtype=dtype, device=device).reshape(y.shape)
        wrt = (L,) if name in FACTOR else (L, b)
        return torch.autograd.grad((w * y).sum(), wrt)

    for got, want in zip(grads(dev), grads("cpu")):
        _close(got, want, dtype, dev)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stencil", sorted(OFFSETS))
def test_the_head_and_its_gradients_on_cuda_match_the_cpu(stencil, dtype):
    """band_head (sample, log-density, KL in one operator) and its one backward on CUDA tensors, every
    cotangent used and the log-density's left out."""
    offs, dev = OFFSETS[stencil], torch.device("cuda", torch.cuda.current_device())
    L0, mu0, eps0 = _factor(offs, (3,), dtype), torch.randn(3, N, dtype=dtype), torch.randn(2, 3, N, dtype=dtype)

    def run(device, used):
        L, mu, eps = (t.to(device).requires_grad_() for t in (L0, mu0, eps0))
        out = gt.band_head(L, offs, mu, eps)
        loss = sum((torch.linspace(-1, 1, y.numel(), dtype=dtype, device=device).reshape(y.shape) * y).sum()
                   for k, y in enumerate(out) if k in used)
        return [*out, *torch.autograd.grad(loss, (L, mu, eps))]

    for used in ((0, 1, 2), (0, 2)):
        for got, want in zip(run(dev, used), run("cpu", used)):
            _close(got, want, dtype, dev)


@gpu
def test_second_order_gradients_on_cuda_match_the_cpu():
    offs, dev, dtype = OFFSETS["grid"], torch.device("cuda", torch.cuda.current_device()), torch.float64
    L0, b0 = _factor(offs, (), dtype), torch.randn(N, dtype=dtype)

    def hvp(device):
        L, b = L0.to(device).requires_grad_(), b0.to(device).requires_grad_()
        gb, = torch.autograd.grad(gt.band_solve_t(L, offs, b).square().sum(), b, create_graph=True)
        return torch.autograd.grad(gb.sum(), (L, b))

    for got, want in zip(hvp(dev), hvp("cpu")):
        _close(got, want, dtype, dev)


@gpu
def test_non_contiguous_cuda_tensors_are_read_correctly():
    offs, dev, dtype = OFFSETS["extgrid"], torch.device("cuda", torch.cuda.current_device()), torch.float64
    L = _factor(offs, (3,), dtype)
    Lt = L.to(dev).transpose(0, 1).contiguous().transpose(0, 1)  # strided (K, 3, n) memory
    bt = torch.randn(N, 3, dtype=dtype, device=dev).mT
    assert not Lt.is_contiguous() and not bt.is_contiguous()
    _close(gt.band_solve_t(Lt, offs, bt), gt.band_solve_t(L, offs, bt.cpu()), dtype, dev)
    _close(gt.band_diag_inv(Lt, offs), gt.band_diag_inv(L, offs), dtype, dev)


@gpu
def test_the_kernels_run_on_pytorchs_current_stream():
    """On a side stream, the operator runs after the (slow) work queued before it on that stream: launched
    on any other stream it would read b before it is doubled."""
    offs, dev, dtype = OFFSETS["grid"], torch.device("cuda", torch.cuda.current_device()), torch.float64
    L, b = _factor(offs, (4,), dtype), torch.randn(2, 4, N, dtype=dtype)
    Ld, bd = L.to(dev), b.to(dev)
    torch.cuda.synchronize(dev)
    side = torch.cuda.Stream(dev)
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # about 0.1 s of spinning on the side stream
        bd.mul_(2)
        x = gt.band_solve_t(Ld, offs, bd, check=False)
        y = gt.band_matvec_t(Ld, offs, x, check=False)
    side.synchronize()
    _close(x, gt.band_solve_t(L, offs, 2 * b), dtype, dev)
    _close(y, 2 * b, dtype, dev)
    # check=True reads its flags on the side stream too.
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)
        bd.mul_(2)
        z = gt.band_solve_t(Ld, offs, bd)
    side.synchronize()
    _close(z, gt.band_solve_t(L, offs, 4 * b), dtype, dev)


@gpu
def test_outputs_and_temporaries_live_in_pytorchs_caching_allocator():
    import cupy
    offs, dev, dtype = OFFSETS["grid"], torch.device("cuda", torch.cuda.current_device()), torch.float64
    L, b = _factor(offs, (4,), dtype).to(dev), torch.randn(64, 4, N, dtype=dtype, device=dev)
    gt.band_solve_t(L, offs, b)  # compiles the kernel and caches the offsets on the device
    torch.cuda.synchronize(dev)
    gc.collect()
    before = torch.cuda.memory_allocated(dev)
    pool_before = cupy.get_default_memory_pool().used_bytes()
    x = gt.band_solve_t(L, offs, b)
    assert torch.cuda.memory_allocated(dev) >= before + x.nbytes
    assert cupy.get_default_memory_pool().used_bytes() == pool_before
    del x
    gc.collect()
    assert torch.cuda.memory_allocated(dev) == before
    # CuPy's own allocations during a call, zero bytes included.
    with bridge._on_stream(cupy, dev, torch.cuda.current_stream(dev)):
        a, e = cupy.empty(1 << 20, dtype=cupy.uint8), cupy.empty(0, dtype=cupy.float32)
        assert torch.cuda.memory_allocated(dev) >= before + (1 << 20)
    assert e.size == 0
    del a, e
    gc.collect()
    assert torch.cuda.memory_allocated(dev) == before


@gpu
def test_mixed_devices_and_missing_cupy_are_clear_errors(monkeypatch):
    offs, dev = OFFSETS["chain"], torch.device("cuda", torch.cuda.current_device())
    L, b = _factor(offs, (), torch.float64), torch.randn(N, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"band_solve_t: .*got L on {dev}, b on cpu"):
        gt.band_solve_t(L.to(dev), offs, b)
    with pytest.raises(ValueError, match=rf"got L on cpu, x on {dev}"):
        gt.band_matvec(L, offs, b.to(dev))
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(RuntimeError, match=re.escape(CUDA_INSTALL)):
        gt.band_logdet(L.to(dev))


@gpu
def test_checks_on_cuda_name_the_problem():
    offs, dev = OFFSETS["chain"], torch.device("cuda", torch.cuda.current_device())
    L = _factor(offs, (), torch.float64)
    L[0, 3] = -1.0
    with pytest.raises(ValueError, match=r"band_logdet: the main diagonal .* strictly positive"):
        gt.band_logdet(L.to(dev))
    b = torch.randn(N, dtype=torch.float64)
    b[5] = float("nan")
    with pytest.raises(ValueError, match=r"band_solve_t: b contains NaN or inf"):
        gt.band_solve_t(_factor(offs, (), torch.float64).to(dev), offs, b.to(dev))


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_banded_precision_normal_on_cuda_matches_the_cpu(monkeypatch, dtype):
    offs, dev = OFFSETS["grid"], torch.device("cuda", torch.cuda.current_device())
    loc0, L0 = torch.randn(3, N, dtype=dtype), _factor(offs, (3,), dtype)
    eps, value = torch.randn(5, 3, N, dtype=dtype), torch.randn(5, 3, N, dtype=dtype)
    real_randn = torch.randn

    def randn(shape, dtype=None, device=None, **kwargs):
        assert tuple(shape) == tuple(eps.shape)
        return eps.to(device=device, dtype=dtype)

    def run(device):
        loc, L = loc0.to(device).requires_grad_(), L0.to(device).requires_grad_()
        d = gt.BandedPrecisionNormal(loc, L, offs)
        monkeypatch.setattr(torch, "randn", randn)
        x = d.rsample((5,))
        s = d.sample((5,))
        monkeypatch.setattr(torch, "randn", real_randn)
        assert x.device == s.device == loc.device
        normal = torch.distributions.Normal(torch.zeros((), dtype=dtype, device=device), 1.0)
        terms = [x.square().sum(), d.log_prob(value.to(device)).sum(), d.entropy().sum(), d.variance.sum(),
                 torch.distributions.kl_divergence(d, normal).sum()]
        total = sum(terms)
        return [x, s, *terms, *torch.autograd.grad(total, (loc, L))]

    for got, want in zip(run(dev), run("cpu")):
        _close(got.detach(), want.detach(), dtype, dev)


@gpu
def test_torch_compile_and_vmap_on_cuda():
    offs, dev, dtype = OFFSETS["grid"], torch.device("cuda", torch.cuda.current_device()), torch.float64
    L, b = _factor(offs, (4,), dtype).to(dev), torch.randn(2, 4, N, dtype=dtype, device=dev)

    def f(L, b):
        x = gt.band_solve_t(L, offs, b)
        return (x * gt.band_diag_inv(L, offs)).sum(-1) + gt.band_logdet(L)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(L, b), f(L, b), rtol=0, atol=0)
    Lg, Lc = L.clone().requires_grad_(), L.clone().requires_grad_()
    torch.testing.assert_close(torch.autograd.grad(compiled(Lg, b).sum(), Lg)[0],
                               torch.autograd.grad(f(Lc, b).sum(), Lc)[0], rtol=1e-12, atol=1e-12)
    torch._dynamo.reset()
    mapped = torch.func.vmap(lambda L, b: gt.band_solve(L, offs, b))(L, b.movedim(0, 1))
    _close(mapped, gt.band_solve(L.cpu()[:, None], offs, b.movedim(0, 1).cpu()), dtype, dev)
    jac = torch.func.jacrev(lambda b: gt.band_matvec(L[0], offs, b))(b[0, 0])
    _close(jac, gt.band_matvec(L[0].cpu(), offs, torch.eye(N, dtype=dtype)).mT, dtype, dev)
