"""The vmap rules of the ``gvae::`` operators: they batch natively, so a mapped axis becomes one more
leading batch axis (``torch.library.register_vmap``; the operators' ``autograd.Function`` s get theirs
generated from these)."""
import torch

from .library import _OPS, _VECTOR, _lib


def _lead(t, dim, batch_ndim, core):
    """t with its mapped axis ``dim`` moved to the front and size-1 axes inserted after it, so that it
    has ``batch_ndim`` batch axes behind the mapped one; ``core`` trailing axes are not batch axes."""
    if dim is None:
        return t
    t = t.movedim(dim, 0)
    missing = batch_ndim - (t.dim() - 1 - core)
    return t[(slice(None),) + (None,) * missing] if missing > 0 else t


def _vmap_vector(name):
    def rule(info, in_dims, L, offsets, v, check=True):
        Ld, vd = in_dims[0], in_dims[2]
        m = max(L.dim() - 2 - (Ld is not None), v.dim() - 1 - (vd is not None))
        return _OPS[name](_lead(L, Ld, m, 2), offsets, _lead(v, vd, m, 1), check), 0
    return rule


for _name in _VECTOR:
    torch.library.register_vmap(f"gvae::{_name}", _vmap_vector(_name), lib=_lib)
torch.library.register_vmap("gvae::band_logdet",
                            lambda info, in_dims, L, check=True: (_OPS["band_logdet"](L.movedim(in_dims[0], 0), check), 0),
                            lib=_lib)
for _name in ("band_trace_inv", "band_diag_inv"):
    torch.library.register_vmap(
        f"gvae::{_name}",
        lambda info, in_dims, L, offsets, check=True, _op=_OPS[_name]: (_op(L.movedim(in_dims[0], 0), offsets, check), 0),
        lib=_lib)


def _mapped_before_batch(t, dim, batch_ndim, core):
    """t with its mapped axis (a size-1 one where ``dim`` is None) placed just before its last
    ``batch_ndim`` batch axes, size-1 axes added where it has fewer: the axes in front of it are the
    samples that a gradient kernel sums over, and the mapped axis lines up with the result's."""
    t = t.unsqueeze(0) if dim is None else t.movedim(dim, 0)
    lead = t.dim() - 1 - core
    if lead < batch_ndim:
        t = t[(slice(None),) + (None,) * (batch_ndim - lead)]
        lead = batch_ndim
    return t.movedim(0, lead - batch_ndim)


def _mapped_factor(info, L, dim):
    """A factor argument whose shape is the result's: the mapped axis in front, expanded where unmapped."""
    return L.movedim(dim, 0) if dim is not None else L.expand((info.batch_size,) + L.shape)


def _vmap_outer(info, in_dims, a, c, like, offsets, scale):
    m = like.dim() - 2 - (in_dims[2] is not None)
    return _OPS["band_outer"](_mapped_before_batch(a, in_dims[0], m, 1), _mapped_before_batch(c, in_dims[1], m, 1),
                              _mapped_factor(info, like, in_dims[2]), offsets, scale), 0


def _vmap_factor_grad(name, core):
    """The rule of a gradient kernel (L, [offsets,] g): the result has L's shape, g broadcasts against
    L's batch (``core`` trailing axes of g are not batch axes)."""
    def rule(info, in_dims, L, *rest):
        m = L.dim() - 2 - (in_dims[0] is not None)
        gi = 1 if name == "band_logdet_grad" else 2
        g = rest[gi - 1]
        g = _lead(g, in_dims[gi], m, core) if in_dims[gi] is not None else g
        args = list(rest)
        args[gi - 1] = g
        return _OPS[name](_mapped_factor(info, L, in_dims[0]), *args), 0
    return rule


torch.library.register_vmap("gvae::band_outer", _vmap_outer, lib=_lib)
for _name, _core in (("band_logdet_grad", 0), ("band_trace_inv_grad", 0), ("band_diag_inv_grad", 1)):
    torch.library.register_vmap(f"gvae::{_name}", _vmap_factor_grad(_name, _core), lib=_lib)


def _head_batch_ndim(L, Ld, mu, mud):
    """The number of batch axes of band_head's L and mu, not counting a mapped one."""
    return max(L.dim() - 2 - (Ld is not None), mu.dim() - 1 - (mud is not None))


def _vmap_head(info, in_dims, L, offsets, mu, eps, check=True):
    """The mapped axis becomes a batch axis of L and mu (in front of theirs) and of eps (just before its
    last m batch axes, behind the samples); x (when L or eps has it) and log q carry it there, the KL in
    front (when L or mu has it)."""
    Ld, mud, ed = in_dims[0], in_dims[2], in_dims[3]
    m = _head_batch_ndim(L, Ld, mu, mud)
    x, log_q, kl = _OPS["band_head"](_lead(L, Ld, m, 2), offsets, _lead(mu, mud, m, 1),
                                     _mapped_before_batch(eps, ed, m, 1), check)
    at = x.dim() - 2 - m
    if Ld is None and ed is None:  # x does not depend on mu: its mapped axis is the size-1 one eps got
        x, x_at = x.squeeze(at), None
    else:
        x_at = at
    return (x, log_q, kl), (x_at, at, 0 if Ld is not None or mud is not None else None)


def _carrying(info, t, dim, m, core):
    """t (mapped on ``dim``, or not: then expanded) with the mapped axis in front of m batch axes and
    ``core`` trailing ones, and a function that takes a result of that shape back to t's per-example one."""
    per_example = t.shape if dim is None else t.movedim(dim, 0).shape[1:]
    t = t.unsqueeze(0).expand((info.batch_size,) + t.shape) if dim is None else t.movedim(dim, 0)
    t = _lead(t, 0, m, core)
    return t, lambda r: r.reshape((info.batch_size,) + per_example)


def _vmap_head_grad(info, in_dims, L, offsets, mu, x, gx=None, glq=None, gkl=None):
    """Every result carries the mapped axis: L and mu are expanded along it where they lack it."""
    Ld, mud, xd, gxd, glqd, gkld = in_dims[0], *in_dims[2:]
    m = _head_batch_ndim(L, Ld, mu, mud)
    L2, L_back = _carrying(info, L, Ld, m, 2)
    mu2, _ = _carrying(info, mu, mud, m, 1)
    sample = [None if t is None else _mapped_before_batch(t, d, m, core)
              for t, d, core in ((x, xd, 1), (gx, gxd, 1), (glq, glqd, 0))]
    gkl2 = None if gkl is None else _lead(gkl, gkld, m, 0)
    gL, gmu, geps = _OPS["band_head_grad"](L2, offsets, mu2, *sample, gkl2)
    at = geps.dim() - 2 - m
    geps = geps.expand(geps.shape[:at] + (info.batch_size,) + geps.shape[at + 1:])  # zeros where no gx: size 1
    return (L_back(gL), gmu, geps), (0, 0, at)


torch.library.register_vmap("gvae::band_head", _vmap_head, lib=_lib)
torch.library.register_vmap("gvae::band_head_grad", _vmap_head_grad, lib=_lib)
