"""The peers' model in the step benchmarks (bench_step.py on the CPU, bench_cuda_step.py on the GPU).

The 784-H-H-2d encoder and d-H-H-784 decoder of Bernoulli logits, ELU, initialised as gvae initialises
them (He normal before ELU, Glorot uniform before the heads, zero biases), as PyTorch modules with
gvae's loss: diagonal q with sigma = softplus(s) + 1e-4 and the ELBO (analytic KL), or with ``iw > 1``
the IWAE bound over ``iw`` samples. PyTorch is imported only by :func:`torch_vae`.
"""
import math

import numpy as np

N_IN = 784


def layer_sizes(hidden, latent):
    """(fan in, fan out) of the six dense layers: encoder, then decoder."""
    return [(N_IN, hidden), (hidden, hidden), (hidden, 2 * latent), (latent, hidden), (hidden, hidden),
            (hidden, N_IN)]


def init_weights(hidden, latent, rng):
    """[(W (fan in, fan out), b (fan out,))] float32, as gvae initialises its layers."""
    out = []
    for k, (din, dout) in enumerate(layer_sizes(hidden, latent)):
        if k in (2, 5):
            limit = math.sqrt(6.0 / (din + dout))
            W = rng.uniform(-limit, limit, (din, dout)).astype(np.float32)
        else:
            W = (rng.standard_normal((din, dout)) * math.sqrt(2.0 / din)).astype(np.float32)
        out.append((W, np.zeros(dout, np.float32)))
    return out


def torch_vae(latent, iw, weights, device="cpu"):
    """The model as a ``torch.nn.Module`` on ``device``, ``loss(x (B, 784), eps (iw, B, latent))`` the
    batch mean of the negative bound."""
    import torch
    import torch.nn.functional as F

    class TorchVAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            lins = []
            for W, b in weights:
                lin = torch.nn.Linear(*W.shape)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(W.T.copy()))
                    lin.bias.copy_(torch.from_numpy(b))
                lins.append(lin)
            self.enc, self.dec = torch.nn.ModuleList(lins[:3]), torch.nn.ModuleList(lins[3:])

        @staticmethod
        def _mlp(layers, h):
            for lin in layers[:-1]:
                h = F.elu(lin(h))
            return layers[-1](h)

        def loss(self, x, eps):
            head = self._mlp(self.enc, x)
            mu, s = head[:, :latent], head[:, latent:]
            sigma = F.softplus(s) + 1e-4
            z = mu + sigma * eps                                    # (K, B, d)
            logits = self._mlp(self.dec, z)
            rec = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
            if iw == 1:
                kl = 0.5 * (mu * mu + sigma * sigma - 1.0).sum(-1) - torch.log(sigma).sum(-1)
                return (kl - rec[0]).mean()
            log_q = (-0.5 * eps * eps - torch.log(sigma)).sum(-1)  # the 2 pi terms of q and p cancel
            log_p = (-0.5 * z * z).sum(-1)
            bound = torch.logsumexp(rec + log_p - log_q, dim=0) - math.log(iw)
            return -bound.mean()

    return TorchVAE().to(device)
