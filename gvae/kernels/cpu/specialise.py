"""Functions compiled in variants from one Python source, the variant fixed at compile time: the one place
where gvae rewrites a function's code.

:func:`specialise` copies a plain Python function under a name of its own, reading values of the caller's
choice in place of some of its globals, and optionally filed under another source file. Numba reads
globals as compile-time constants, so a branch on a bound flag is removed: a variant runs as fast as a
hand-written copy. Globals, because a jitted function that reaches a kernel through a closure cell or an
argument puts it in Numba's cache key, and a jitted function pickles with a per-process uuid, so the
cache would miss in every new process; globals stay out of the key, and each copy gets its own qualified
name, hence its own cache files. Numba drops a cached function when its source file changes,
so a copy is filed under the file whose change must recompile it.

Two users:

- templates: plain functions marked with :func:`template` and the options they are to be jitted with,
  which read global names left to their variants (a flag, the vector language of a width); :func:`variants`
  compiles a group of them with the names bound, each variant calling the others of its group.
- the C entries (:mod:`entries`): the code that unpacks a kernel's arguments is generated from the
  entry's declared argument list, then specialised to the kernel it calls and filed under the kernel's own
  source file, so that its cache goes stale with that file.

A count picked at run time among a few values (how many terms a loop sums) is a literal argument
instead: a jitted caller that passes a constant gets a version compiled for that value (Numba types it
``Literal[int]``), in which the loop has a constant trip count and LLVM unrolls it.
"""
import types

from .jit import jit

__all__ = ["specialise", "template", "variants"]


def specialise(fn, name, home=None, **bindings):
    """A copy of the plain function ``fn`` named ``name`` (in its qualified name too) that reads
    ``bindings`` in place of the globals of the same names; the other globals are those ``fn`` sees now.
    Where ``home`` (a source file's path) is given, the copy's code is filed under it, so that Numba's
    cache of the copy goes stale with that file."""
    code = fn.__code__ if home is None else fn.__code__.replace(co_filename=home)
    copy = types.FunctionType(code, dict(fn.__globals__, **bindings), name, fn.__defaults__)
    outer, _, _ = fn.__qualname__.rpartition(".")
    copy.__qualname__ = f"{outer}.{name}" if outer else name
    copy.__doc__ = fn.__doc__
    return copy


def template(**options):
    """Decorator: mark a function as a template, to be compiled by :func:`variants` with
    ``jit(**options)``; the function itself stays plain Python and is never compiled."""
    def mark(fn):
        fn.jit_options = options
        return fn
    return mark


def variants(templates, suffix, **bindings):
    """One variant of each of ``templates``: a jitted :func:`specialise` copy named ``template.__name__ +
    suffix`` that reads ``bindings`` in place of the globals of the same names, and the variants of the
    other templates in place of their names (so that a group of templates calling each other stays within
    its variant). Returns the variants, in order.

    The other globals are those of each template's module at this call, so templates must be
    specialised after everything they read is defined. A variant is filed under its template's own file;
    bindings from other files are covered by the in-tree cache's digest of every kernel source
    (:func:`compile_cache.drop_stale_cache`)."""
    copies = [specialise(t, t.__name__ + suffix, **bindings) for t in templates]
    compiled = {t.__name__: jit(**t.jit_options)(c) for t, c in zip(templates, copies)}
    for copy in copies:  # Numba resolves globals when it compiles, at the first call
        copy.__globals__.update(compiled)
    return [compiled[t.__name__] for t in templates]
