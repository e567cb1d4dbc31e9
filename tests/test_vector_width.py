"""The full-width vector request (gvae.kernels.cpu.vector_width): it reaches the LLVM function of the kernel
that makes it, on an AVX-512 CPU that kernel's loop uses 512-bit registers, and the results are the same
bits as without it."""
import llvmlite.binding as llvm
import numba
import numpy as np
import pytest

from gvae.kernels import activation_cpu, bernoulli_cpu
from gvae.kernels.cpu.vector_width import ATTRIBUTE, wide_vectors
from gvae.kernels.vecmath_cpu import FMA, expm1_nonpos

AVX512 = bool(llvm.get_host_cpu_features().get("avx512f", False))


def _elu(x):
    for i in range(x.size):
        e = expm1_nonpos(x[i])
        x[i] = x[i] if x[i] > 0 else e


def _fresh(fn, fastmath=FMA):
    """fn compiled now (no on-disk cache: Numba inspects only what it compiled in this process)."""
    return numba.njit(error_model="numpy", fastmath=fastmath, cache=False)(fn)


def _wide_elu_inline(x):
    wide_vectors()
    for i in range(x.size):
        e = expm1_nonpos(x[i])
        x[i] = x[i] if x[i] > 0 else e


def test_the_attribute_reaches_the_function_that_asks():
    narrow, wide = _fresh(_elu), _fresh(_wide_elu_inline)
    x = np.linspace(-20, 5, 1001, dtype=np.float32)
    a, b = x.copy(), x.copy()
    narrow(a)
    wide(b)
    assert ATTRIBUTE in wide.inspect_llvm(wide.signatures[0])
    assert ATTRIBUTE not in narrow.inspect_llvm(narrow.signatures[0])
    np.testing.assert_array_equal(a, b)  # elementwise: the same bits at any width
    np.testing.assert_allclose(b.astype(np.float64), np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(not AVX512, reason="the CPU has no AVX-512: the widest vector is the same either way")
def test_on_avx512_the_loop_uses_512_bit_registers():
    wide = _fresh(_wide_elu_inline)
    wide(np.zeros(64, np.float32))
    assert "zmm" in wide.inspect_asm(wide.signatures[0])


@pytest.mark.parametrize("kernel", [activation_cpu._forward, activation_cpu._backward, bernoulli_cpu._loglik,
                                    bernoulli_cpu._row_total])
def test_the_elementwise_kernels_ask_for_it(kernel):
    """Each arithmetic-bound kernel (the vectorised polynomials and the likelihood's row totals) makes the
    request in its own body: compiled afresh, its LLVM function carries the attribute."""
    fresh = _fresh(kernel.py_func, fastmath={"reassoc", "contract"})
    f32 = np.float32
    if kernel is activation_cpu._forward:
        args = (np.zeros((2, 3), f32), np.zeros(3, f32), 2)
    elif kernel is activation_cpu._backward:
        args = (np.zeros((2, 3), f32), np.zeros((2, 3), f32), 2, np.zeros((2, 3), f32), np.zeros(3, f32))
    elif kernel is bernoulli_cpu._loglik:
        args = (np.zeros((2, 3), f32), np.zeros((2, 3), f32), np.zeros((0, 3), f32), 0, np.zeros(2, f32),
                np.zeros(3, f32), np.zeros(3, f32))
    else:
        args = (np.zeros(5, f32), np.zeros(5, f32))
    fresh(*args)
    assert ATTRIBUTE in fresh.inspect_llvm(fresh.signatures[0])


@pytest.mark.parametrize("op, instruction", [("multiply", "vmulps"), ("add", "vaddps"), ("divide", "vdivps")])
def test_the_binary_kernel_of_each_operation_is_vectorised(op, instruction):
    """arithmetic_cpu's elementwise kernel is compiled once per operation: its float32 loop runs on packed
    vector instructions (with the operation read at run time it did not, and ran 6x NumPy's time)."""
    import re

    from gvae.kernels import arithmetic_cpu
    kernel = arithmetic_cpu._BINARY[arithmetic_cpu._CODES[op]].kernel
    fresh = numba.njit(error_model="numpy", cache=False)(kernel.py_func)
    a, b, out = (np.full((4, 64), v, np.float32) for v in (3.0, 2.0, 0.0))
    fresh(a, b, out, 0, 4)
    np.testing.assert_array_equal(out, getattr(np, op)(a, b))
    assert re.search(instruction + r"\s[^\n]*%[xyz]mm", fresh.inspect_asm(fresh.signatures[0])), op
