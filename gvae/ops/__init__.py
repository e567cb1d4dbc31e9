"""Differentiable operations. On plain arrays each simply computes; on traced values it also records
its vector-Jacobian product (see :mod:`gvae.autodiff`). Traced values get ``+ - * / ** @``, unary
``-``, indexing, ``.T``, ``.reshape``, ``.sum`` and ``.mean`` bound here."""
from ..autodiff import Tracer, value_of
from .elementwise import *  # noqa: F401,F403
from .elementwise import __all__ as _elementwise
from .reductions import *  # noqa: F401,F403
from .reductions import __all__ as _reductions
from .shape import *  # noqa: F401,F403
from .shape import __all__ as _shape
from .linalg import *  # noqa: F401,F403
from .linalg import __all__ as _linalg
from .densities import *  # noqa: F401,F403
from .densities import __all__ as _densities
from .band import *  # noqa: F401,F403
from .band import __all__ as _band
from .importance import *  # noqa: F401,F403
from .importance import __all__ as _importance
from .discrepancy import *  # noqa: F401,F403
from .discrepancy import __all__ as _discrepancy
from .gp import *  # noqa: F401,F403
from .gp import __all__ as _gp
from .gamma import *  # noqa: F401,F403
from .gamma import __all__ as _gamma

__all__ = (_elementwise + _reductions + _shape + _linalg + _densities + _band + _importance + _discrepancy + _gp
           + _gamma + ["value_of"])


def _bind():
    from . import elementwise as e, linalg as la, reductions as r, shape as sh
    ops = {"add": e.add, "sub": e.subtract, "mul": e.multiply, "truediv": e.divide, "pow": e.power,
           "matmul": la.matmul}
    for name, op in ops.items():
        setattr(Tracer, f"__{name}__", lambda a, b, op=op: op(a, b))
        setattr(Tracer, f"__r{name}__", lambda a, b, op=op: op(b, a))
    Tracer.__neg__ = lambda a: e.negative(a)
    Tracer.__getitem__ = lambda a, idx: sh.getitem(a, idx)
    Tracer.T = property(lambda a: sh.transpose(a))
    Tracer.reshape = lambda a, *shape: sh.reshape(a, shape[0] if len(shape) == 1 else shape)
    Tracer.sum = lambda a, axis=None, keepdims=False: r.sum(a, axis=axis, keepdims=keepdims)
    Tracer.mean = lambda a, axis=None, keepdims=False: r.mean(a, axis=axis, keepdims=keepdims)


_bind()
