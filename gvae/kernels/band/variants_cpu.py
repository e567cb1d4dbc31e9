"""Kernels compiled in variants from one Python source, the variant fixed at compile time.

A *template* is a plain Python function, marked with :func:`template` and the options it is to be
jitted with, that reads global names left to its variants: a flag (transposed or not), the function it
calls. :func:`specialise` compiles copies of templates in which those names are bound. Numba reads
globals as compile-time constants, so a branch on a bound flag is removed: a variant runs as fast as a
hand-written copy. Globals, because a jitted function that reaches a kernel through a closure cell or an
argument puts it in Numba's cache key, and a jitted function pickles with a per-process uuid, so the
cache would miss in every new process; globals stay out of the key, and each variant gets its own
qualified name (``template + suffix``), hence its own cache files.

A count picked at run time among a few values (how many terms a loop sums) is a literal argument
instead: a jitted caller that passes a constant gets a version compiled for that value (Numba types it
``Literal[int]``), in which the loop has a constant trip count and LLVM unrolls it.
"""
import types

from ..jit import jit


def template(**options):
    """Decorator: mark a function as a template, to be compiled by :func:`specialise` with
    ``jit(**options)``; the function itself stays plain Python and is never compiled."""
    def mark(fn):
        fn.jit_options = options
        return fn
    return mark


def specialise(templates, suffix, home=None, **bindings):
    """One variant of each of ``templates``: a jitted copy named ``template.__name__ + suffix`` that reads
    ``bindings`` in place of the globals of the same names, and the variants of the other templates
    in place of their names (so that a group of templates calling each other stays within its variant).
    Returns the variants, in order.

    The other globals are those of each template's module at this call, so templates must be
    specialised after everything they read is defined. Numba drops a cached kernel when the source
    file of its function changes, and a variant's behaviour also depends on its bindings: ``home``
    (a module) is the file to watch when the bindings come from another module than the templates."""
    variants = {}
    namespaces = []
    for t in templates:
        code = t.__code__ if home is None else t.__code__.replace(co_filename=home.__file__)
        glob = dict(t.__globals__, **bindings)
        fn = types.FunctionType(code, glob, t.__name__ + suffix, t.__defaults__)
        fn.__qualname__ = t.__qualname__ + suffix
        fn.__doc__ = t.__doc__
        variants[t.__name__] = jit(**t.jit_options)(fn)
        namespaces.append(glob)
    for glob in namespaces:  # Numba resolves globals when it compiles, at the first call
        glob.update(variants)
    return [variants[t.__name__] for t in templates]
