"""How a call of a ``gvae::`` operator enters PyTorch's autograd: the operators' ``autograd.Function`` s
and the road each call takes to them.

Derivatives are one ``torch.autograd.Function`` per operator (:func:`_autograd`) with a reverse-mode rule
and a forward-mode one (:mod:`gvae.torch.derivatives`), so ``torch.autograd.forward_ad`` and the
``torch.func`` transforms (``grad``, ``jacrev``, ``jvp``, ``jacfwd``, ``hessian``, ``vmap`` of each) work on
the public functions. Called as ``torch.ops.gvae.NAME``, an operator takes reverse and forward mode, but
not ``torch.func``'s derivatives: those enter an ``autograd.Function`` before the dispatcher, so such a call
refuses clearly.

The public functions take a shorter road in plain eager mode (:func:`_call`): the dispatcher and
``torch.library``'s Python autograd kernel cost several kernel calls on a small input, so on plain CPU
tensors with nothing tracing (CUDA tensors always go through the dispatcher), the CPU kernel runs directly,
or inside an ``autograd.Function`` made of the operator's own setup and backward when a gradient is
wanted."""
import torch
import torch.autograd.forward_ad as _forward_ad

from .library import _CPU, _FAKE, _OPS, _lib

# name -> autograd.Function of the operator (forward and reverse mode, torch.func) and of the eager path
# (reverse mode)
_FUNCTION, _EAGER = {}, {}


def _autograd(name, setup_context, backward, jvp):
    """Register ``gvae::name``'s derivatives: reverse mode (``backward``) and forward mode (``jvp``).

    ``setup_context(ctx, inputs, output)`` keeps what both need and returns the tensors to save;
    ``backward(ctx, *grads)`` and ``jvp(ctx, *tangents)`` read them from ``ctx.saved_tensors``. One
    ``torch.autograd.Function`` in the form ``torch.func`` requires (a separate ``setup_context``, a
    generated vmap rule) is the operator's Autograd kernel, so ``torch.func.grad``/``jacrev``/``jvp``/
    ``jacfwd``, ``torch.autograd.forward_ad`` and ``torch.compile`` all see the same rules.
    (``torch.library.register_autograd`` takes no forward-mode rule, and its Function has no
    ``setup_context``, which ``torch.func`` refuses.) The eager path (:func:`_call`) gets the same pair
    as a Function with the set-up inside ``forward``: PyTorch binds a separate ``setup_context``'s
    arguments with ``inspect`` on every call."""
    op, cpu = _OPS[name], _CPU[name]
    # The dispatcher drops trailing arguments equal to their defaults; the rules see every argument.
    defaults = [a.default_value for a in op._schema.arguments if a.has_default_value()]
    arity = len(op._schema.arguments)

    def below_autograd(*args):
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args)

    def save(ctx, inputs, output):
        tensors = setup_context(ctx, inputs, output)
        ctx.save_for_backward(*tensors)
        ctx.save_for_forward(*tensors)

    function = type(f"{name}_derivatives", (torch.autograd.Function,), {
        "forward": staticmethod(below_autograd), "setup_context": staticmethod(save),
        "backward": staticmethod(backward), "jvp": staticmethod(jvp), "generate_vmap_rule": True})
    _FUNCTION[name] = function

    def autograd_kernel(*args):
        args = args + tuple(defaults[len(defaults) - (arity - len(args)):])
        if torch._C._are_functorch_transforms_active():
            # Reached from inside a transform's level, where an autograd.Function can no longer be
            # entered (functorch hands it to each level from the top, before the dispatcher).
            raise NotImplementedError(
                f"torch.ops.gvae.{name} cannot be differentiated by torch.func transforms when called as "
                f"an operator; call gvae.torch.{name}, the same operator with its derivatives entered as "
                "torch.func requires")
        return function.apply(*args)
    _lib.impl(name, autograd_kernel, "Autograd")

    def forward(ctx, *args):
        out = cpu(*args)
        ctx.save_for_backward(*setup_context(ctx, args, out))
        return out
    _EAGER[name] = type(name, (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward)})


def _plain(tensors):
    """Whether a call on ``tensors`` outside torch.compile and torch.func may skip PyTorch's dispatcher:
    CPU tensors of the base class (no fake, functional or batched wrapper), nothing that intercepts
    operators (a dispatch or function mode) and no forward-mode AD (a ``dual_level``, whose tangents only
    the operator's Autograd kernel carries)."""
    if (torch._C._len_torch_dispatch_stack() or torch._C._len_torch_function_stack()
            or _forward_ad._current_level >= 0):
        return False
    for t in tensors:  # a loop and is_cpu: cheaper per call than all(...) and device.type
        if type(t) is not torch.Tensor or not t.is_cpu:
            return False
    return True


class _Leaf(tuple):
    """A tuple that torch.utils._pytree keeps whole (it flattens only the tuple type itself)."""


def _call(name, *args):
    """``torch.ops.gvae.name(*args)``, in eager mode on plain CPU tensors without the dispatcher.

    The dispatcher and the autograd kernel of ``torch.library`` cost, in Python, several times the kernel
    on small inputs; eagerly the same CPU kernel runs directly (no gradient wanted) or inside an
    ``autograd.Function`` with the registered backward (same values, same gradients). Under a torch.func
    transform the operator's Function is applied from the top; anything else that traces goes through
    the operator."""
    if torch.compiler.is_compiling():
        # Before the functorch query below, which Dynamo cannot trace. The checks run in the traced Python,
        # where Dynamo lets gvae's own exception reach the caller (raised from the fake implementation, it
        # would come wrapped in Dynamo's TorchRuntimeError).
        _FAKE[name](*args)
        return _OPS[name](*args)
    if torch._C._are_functorch_transforms_active():
        # From the top, where torch.func hands an autograd.Function to each of its levels in turn; the
        # offsets as one leaf of its argument tree (the rules return one derivative per argument).
        return _FUNCTION[name].apply(*(_Leaf(a) if isinstance(a, (tuple, list)) else a for a in args))
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not _plain(tensors):
        return _OPS[name](*args)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _EAGER[name].apply(*args)
    return _CPU[name](*args)
