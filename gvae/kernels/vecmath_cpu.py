"""exp, expm1, log1p and tanh that LLVM can vectorise inside Numba loops, in the argument's precision.

Numba here has no SVML, so ``math.exp``/``math.log1p`` in a loop are scalar library calls, one element
at a time. These are branch-free polynomials, inlined into the kernels. Each public function is one
name with two implementations, chosen at compile time by the type of its argument (``numba.extending.
overload``): float32 arithmetic for a float32 argument (8 lanes per AVX2 register), float64 for any other.

float64 (the checks' precision):

    exp(x), x in [-88, 0]:  t = x / 256, p = sum_{k<=12} t^k / k!, then p <- p^2 eight times;
                            relative error < 2e-13 (x < -88 is read as -88: e^-88 ~ 6e-39).
    expm1(x), x <= 0:       a Taylor polynomial for x > -0.01, where e^x - 1 cancels; exp(x) - 1 below
                            (relative error < 3e-11, at x = -0.01); -1 below -88.
    log1p(e), e in [0, 1]:  2 atanh(s), s = e / (2 + e) <= 1/3, odd series to s^31; relative error
                            < 1e-15.

float32 (training's precision), about 1 ulp:

    e^x - 1, x in [-17.5, 0]:  x = n ln 2 + r (Cody & Waite: ln 2 split in two, |r| <= 0.35), e^r - 1 by
                               its Taylor polynomial to r^8 (truncation < 2e-10), then
                               e^x - 1 = 2^n (e^r - 1) + (2^n - 1): 2^n is exact, 2^n - 1 too for
                               n >= -24 (below it rounds to -1, as the result does), and no step
                               cancels (2^n - 1 <= -1/2 when n < 0). 2^n is built from its bits
                               (exponent field n + 127). Below -17.5, -1.
    e^x, x in [-86.5, 0]:      2^n (e^r - 1) + 2^n (x < -86.5 is read as -86.5: e^-86.5 ~ 3e-38).
    log1p(e), e in [0, 1]:     2 atanh(s) as above, odd series to s^15 (truncation < 2e-9).
    tanh(x):                   tanh |x| = -m / (2 + m), m = e^(-2|x|) - 1 by the expm1 above (no
                               cancellation near 0), with x's sign; float64 arguments take the
                               library's tanh (in float64, one element at a time: slower over
                               float32 arrays).

No float32 result or intermediate is subnormal (below 2^-126 ~ 1.2e-38, but not zero): a subnormal
operand or result costs the CPU a slow path: the Bernoulli log-likelihood ran markedly slower on logits
below -44 (where s^2 was subnormal), and slower still below -88 (where e^x was too), as a trained
decoder's background pixels may be. So the series is summed at max(s, 2^-40)^2, which is 1 just as the
series at s^2 is for s < 2^-30, and e^x stops at -86.5, where 2^n (e^r - 1) + 2^n is still normal for
every r (n >= -125, e^r >= 0.7), as are the sigmoid's e / (1 + e) and the softplus's 2 s from it.

FMA contraction (:data:`FMA`), float32 arithmetic for float32 arguments and 2^n built from its bits each
made the ELU forward over float32 faster.
"""
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .cpu.jit import jit

# What the kernels that evaluate these polynomials compile with: LLVM may fuse a multiply and an add into
# one FMA (more accurate, not less; CUDA's nvcc does the same by default).
FMA = {"contract"}

_f32 = np.float32
_INV_FACT64 = tuple(1.0 / math.factorial(k) for k in range(13))
_INV_ODD64 = tuple(1.0 / (2 * k + 1) for k in range(16))
_INV_FACT32 = tuple(_f32(c) for c in _INV_FACT64[:9])
_INV_ODD32 = tuple(_f32(c) for c in _INV_ODD64[:8])
_LOG2E32 = _f32(1.4426950408889634)
_LN2_HI32 = _f32(0.693359375)  # 355/512: n * _LN2_HI32 is exact for |n| < 2^15
_LN2_LO32 = _f32(math.log(2.0) - 0.693359375)

# Every helper is a function of its own, which LLVM inlines into the kernel's loop and unrolls (the same
# speed as Numba's IR inlining, measured); Numba's IR inliner warned (NumbaIRAssumptionWarning) on the
# phi nodes of a helper's loops and conditional expressions. So selections below are 0/1 arithmetic.
_helper = jit(error_model="numpy", fastmath=FMA)


@_helper
def _horner(c, t):
    """sum_k c[k] t^k, in the dtype of c and t."""
    p = c[len(c) - 1]
    for k in range(len(c) - 2, -1, -1):
        p = c[k] + t * p
    return p


@_helper
def _log1p_unit(e, odd, least):
    """log(1 + e) for e in [0, 1] as 2 atanh(s), s = e / (2 + e) <= 1/3, by the odd series of
    ``odd`` = (1, 1/3, 1/5, ...) in e's dtype, summed at max(s, least)^2 (``least`` <= 2^-30 in e's
    dtype: the same sum, without the subnormal s^2 of a tiny s)."""
    two = odd[0] + odd[0]
    s = e / (two + e)
    q = max(s, least)
    return two * s * _horner(odd, q * q)


# float64 ------------------------------------------------------------------------------------------

@_helper
def _exp_nonpos64(x):
    p = _horner(_INV_FACT64, max(x, -88.0) * (1.0 / 256.0))
    for _ in range(8):
        p = p * p
    return p


@_helper
def _expm1_nonpos64(x):
    # Clamped below too: the unselected Taylor term at x = -inf would be 0 * inf = nan (e^-88 - 1 is -1).
    x = max(min(x, 0.0), -88.0)
    near = np.float64(x > -0.01)  # the Taylor polynomial where e^x - 1 cancels
    return near * x * _horner(_INV_FACT64[1:7], x) + (1.0 - near) * (_exp_nonpos64(x) - 1.0)


# float32 ------------------------------------------------------------------------------------------

@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose IEEE 754 bit pattern is the low 32 bits of the integer ``bits`` (an LLVM
    bitcast: free, and it vectorises)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        word = args[0]
        if bits.bitwidth > 32:
            word = builder.trunc(word, ir.IntType(32))
        return builder.bitcast(word, ir.FloatType())
    return types.float32(bits), codegen


@_helper
def _reduce32(x, lowest):
    """(r, 2^n) with x = n ln 2 + r, |r| <= 0.35, for x in [lowest, 0] (clamped to it; lowest >= -86.5)."""
    x = max(min(x, _f32(0.0)), lowest)
    n = np.floor(x * _LOG2E32 + _f32(0.5))
    r = (x - n * _LN2_HI32) - n * _LN2_LO32
    # 2^n, a normal float32 for n >= -126: biased exponent n + 127, zero mantissa.
    return r, _f32_from_bits((np.int64(n) + 127) << 23)


@_helper
def _expm1_nonpos32(x):
    # Below -17.5, e^x < 2^-25: e^x - 1 rounds to -1 in float32, as it does at -17.5.
    r, s = _reduce32(x, _f32(-17.5))
    return s * (r * _horner(_INV_FACT32[1:], r)) + (s - _f32(1.0))


@_helper
def _exp_nonpos32(x):
    r, s = _reduce32(x, _f32(-86.5))
    return s * (r * _horner(_INV_FACT32[1:], r)) + s


# The public names: plain Python outside Numba, the implementation of the argument's type inside it.

def exp_nonpos(x):
    """e^x for x <= 0 (x > 0 is read as 0)."""
    return math.exp(min(x, 0.0))


def expm1_nonpos(x):
    """e^x - 1 for x <= 0 (x > 0 is read as 0)."""
    return math.expm1(min(x, 0.0))


def tanh(x):
    """tanh(x)."""
    return math.tanh(x)


def exp_and_sigmoid(x):
    """(e^-|x|, 1 / (1 + e^-x)): the sigmoid from the one exponential, which the caller reuses."""
    e = math.exp(-abs(x))
    return e, (1.0 if x >= 0 else e) / (1.0 + e)


def softplus_and_sigmoid(x):
    """(log(1 + e^x), 1 / (1 + e^-x)) from one exponential."""
    e, sigmoid = exp_and_sigmoid(x)
    return max(x, 0.0) + math.log1p(e), sigmoid


@overload(exp_nonpos, inline="always", jit_options={"fastmath": FMA})
def _exp_nonpos_typed(x):
    if x == types.float32:
        return lambda x: _exp_nonpos32(x)
    return lambda x: _exp_nonpos64(min(np.float64(x), 0.0))


@overload(expm1_nonpos, inline="always", jit_options={"fastmath": FMA})
def _expm1_nonpos_typed(x):
    if x == types.float32:
        return lambda x: _expm1_nonpos32(x)
    return lambda x: _expm1_nonpos64(np.float64(x))


@overload(tanh, inline="always", jit_options={"fastmath": FMA})
def _tanh_typed(x):
    if x == types.float32:
        def f32(x):
            m = _expm1_nonpos32(_f32(-2.0) * abs(x))
            up = _f32(x >= 0)  # the sign, as a 0/1 select
            return (-m / (_f32(2.0) + m)) * (up + up - _f32(1.0))
        return f32
    return lambda x: math.tanh(np.float64(x))


@overload(exp_and_sigmoid, inline="always", jit_options={"fastmath": FMA})
def _exp_and_sigmoid_typed(x):
    if x == types.float32:
        def f32(x):
            e = _exp_nonpos32(-abs(x))
            inv = _f32(1.0) / (_f32(1.0) + e)
            up = _f32(x >= 0)  # sigmoid: inv for x >= 0, e * inv below; a 0/1 select
            return e, inv * (up + (_f32(1.0) - up) * e)
        return f32

    def f64(x):
        x = np.float64(x)
        e = _exp_nonpos64(-abs(x))
        inv = 1.0 / (1.0 + e)
        up = np.float64(x >= 0)
        return e, inv * (up + (1.0 - up) * e)
    return f64


@overload(softplus_and_sigmoid, inline="always", jit_options={"fastmath": FMA})
def _softplus_and_sigmoid_typed(x):
    if x == types.float32:
        def f32(x):
            e, sigmoid = exp_and_sigmoid(x)
            return max(x, _f32(0.0)) + _log1p_unit(e, _INV_ODD32, _f32(2.0 ** -40)), sigmoid
        return f32

    def f64(x):
        e, sigmoid = exp_and_sigmoid(x)
        return max(np.float64(x), 0.0) + _log1p_unit(e, _INV_ODD64, 0.0), sigmoid
    return f64
