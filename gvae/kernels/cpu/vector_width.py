"""Full-width vectors for a kernel's loops: :func:`wide_vectors`, called first in a Numba kernel, lets LLVM
vectorise that kernel's loops with the widest registers the CPU has (512 bits on AVX-512).

LLVM's tuning for most AVX-512 Intel cores (Skylake-X to Sapphire Rapids, and this project's VMs) prefers
256-bit vectors, so Numba's loops use half of an AVX-512 register unless a function asks otherwise: the
float32 ELU and the Bernoulli log-likelihood, whose polynomials are arithmetic-bound, ran at 8 lanes where
16 fit. The request is LLVM's function attribute ``"prefer-vector-width"="512"`` on the calling function
(only there: nothing outside the kernel, nor Numba's other compilations, changes); LLVM caps it at the
widest vector the CPU has, so on a CPU without AVX-512 the code is the same as without it. Each kernel's
loop must sit in the function that calls it (a helper compiled on its own is vectorised in its own module,
before it is inlined). Only arithmetic-bound loops gain; memory-bound ones (Adam's pass, the squared
norm's blocked sum) were measured no faster or slower and do not ask (docs/performance.md, "Full-width
vectors"). Element-wise results are the same bits either way; a sum that LLVM may reassociate
(``fastmath={"reassoc"}``) keeps twice as many running sums, so its last bits differ.
"""
from numba import types
from numba.extending import intrinsic

__all__ = ["wide_vectors"]

ATTRIBUTE = '"prefer-vector-width"="512"'


@intrinsic
def wide_vectors(typingctx):
    """Inside a Numba function: mark the function being compiled with :data:`ATTRIBUTE`; returns None."""
    def codegen(context, builder, signature, args):
        # llvmlite's FunctionAttributes accepts only the attributes it knows by name; a string attribute
        # is valid LLVM IR after the signature, so it is added to the underlying set as written.
        set.add(builder.function.attributes, ATTRIBUTE)
        return context.get_dummy_value()
    return types.none(), codegen
