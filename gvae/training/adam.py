"""Adam over a flat parameter buffer: one fused kernel pass per step, optional global-norm clipping. The
moments live on the buffer's device; :meth:`Adam.state` and :meth:`Adam.load_state` exchange host copies
with checkpoints."""
import math

from .. import kernels
from ..kernels import array_module, device_of, to_device, to_host


class Adam:
    """Adam (Kingma & Ba) with bias correction on ``flat`` (updated in place, on its device)."""

    def __init__(self, flat, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, clip_norm=None):
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {beta1}, {beta2}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be positive or None, got {clip_norm}")
        self.flat = flat
        self.lr, self.beta1, self.beta2, self.eps, self.clip_norm = lr, beta1, beta2, eps, clip_norm
        xp = array_module(flat)
        self.m = xp.zeros_like(flat)
        self.v = xp.zeros_like(flat)
        self.step = 0

    def update(self, grad, norm=None, average=None, decay=None):
        """Apply one step with the flat gradient ``grad``; returns the gradient's global norm
        (pass ``norm``, a host float, when it is already known; else it is read from the device). With
        ``average`` (a buffer like ``flat``) and ``decay``, the Polyak average's step on the new parameters
        in the same pass (:func:`gvae.kernels.adam_update`)."""
        if norm is None:
            norm = math.sqrt(kernels.sum_squares(grad))
        scale = 1.0
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / norm
        self.step += 1
        kernels.adam_update(self.flat, grad, self.m, self.v, lr=self.lr, beta1=self.beta1,
                            beta2=self.beta2, eps=self.eps, step=self.step, scale=scale, average=average, decay=decay)
        return norm

    def state(self):
        """Host copies of the moments and the step count, for a checkpoint."""
        return {"adam_m": to_host(self.m), "adam_v": to_host(self.v), "adam_step": self.step}

    def load_state(self, state):
        """Restore from host arrays (a checkpoint's), onto the buffer's device."""
        device = device_of(self.flat)
        self.m[...] = to_device(state["adam_m"], device)
        self.v[...] = to_device(state["adam_v"], device)
        self.step = int(state["adam_step"])
