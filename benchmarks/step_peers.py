"""The peers' model in the step benchmarks (bench_step.py on the CPU, bench_cuda_step.py on the GPU).

The 784-H-H-2d encoder and d-H-H-784 decoder of Bernoulli logits, ELU, initialised as gvae initialises
them (He normal before ELU, Glorot uniform before the heads, zero biases), as PyTorch modules with
gvae's loss: diagonal q with sigma = softplus(s) + 1e-4 and the ELBO (analytic KL), or with ``iw > 1``
the IWAE bound over ``iw`` samples. PyTorch is imported only by :func:`torch_vae`.

``posterior="full"`` is the peer of gvae's full family as a PyTorch user writes it: a head of d + d^2
outputs as gvae's (mu, then a d x d block whose lower triangle is the precision's Cholesky factor L, its
diagonal through softplus + 1e-4), and ``torch.distributions.MultivariateNormal(mu,
precision_matrix=L L^T)``: its reparameterised sample from the given noise, its ``log_prob`` and the dense
``kl_divergence`` to N(0, I).
"""
import math

import numpy as np

N_IN = 784


POSTERIORS = {"diagonal": lambda d: 2 * d, "full": lambda d: d + d * d}  # the encoder head's size


def layer_sizes(hidden, latent, posterior="diagonal"):
    """(fan in, fan out) of the six dense layers: encoder, then decoder."""
    return [(N_IN, hidden), (hidden, hidden), (hidden, POSTERIORS[posterior](latent)), (latent, hidden),
            (hidden, hidden), (hidden, N_IN)]


def init_weights(hidden, latent, rng, posterior="diagonal"):
    """[(W (fan in, fan out), b (fan out,))] float32, as gvae initialises its layers."""
    out = []
    for k, (din, dout) in enumerate(layer_sizes(hidden, latent, posterior)):
        if k in (2, 5):
            limit = math.sqrt(6.0 / (din + dout))
            W = rng.uniform(-limit, limit, (din, dout)).astype(np.float32)
        else:
            W = (rng.standard_normal((din, dout)) * math.sqrt(2.0 / din)).astype(np.float32)
        out.append((W, np.zeros(dout, np.float32)))
    return out


def torch_vae(latent, iw, weights, device="cpu", posterior="diagonal"):
    """The model as a ``torch.nn.Module`` on ``device``, ``loss(x (B, 784), eps (iw, B, latent))`` the
    batch mean of the negative bound; ``posterior`` "diagonal" or "full" (the module's docstring)."""
    import torch
    import torch.nn.functional as F
    from torch.distributions import MultivariateNormal, kl_divergence

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

        def full_loss(self, x, eps):
            head = self._mlp(self.enc, x)
            mu, block = head[:, :latent], head[:, latent:].reshape(-1, latent, latent)
            L = torch.tril(block, -1) + torch.diag_embed(F.softplus(torch.diagonal(block, dim1=-2, dim2=-1)) + 1e-4)
            q = MultivariateNormal(mu, precision_matrix=L @ L.transpose(-1, -2))
            z = q.loc + (q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)     # (K, B, d)
            logits = self._mlp(self.dec, z)
            rec = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
            prior = MultivariateNormal(torch.zeros_like(mu), scale_tril=torch.eye(latent, device=mu.device))
            if iw == 1:
                return (kl_divergence(q, prior) - rec[0]).mean()
            bound = torch.logsumexp(rec + prior.log_prob(z) - q.log_prob(z), dim=0) - math.log(iw)
            return -bound.mean()

        def loss(self, x, eps):
            if posterior == "full":
                return self.full_loss(x, eps)
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
