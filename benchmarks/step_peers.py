"""The peers' model in the step benchmarks (bench_step.py on the CPU, bench_cuda_step.py on the GPU).

The 784-H-H-2d encoder and d-H-H-784 decoder of Bernoulli logits, ELU, initialised as gvae initialises
them (He normal before ELU, Glorot uniform before the heads, zero biases), as PyTorch modules with
gvae's loss: diagonal q with sigma = softplus(s) + 1e-4 and the ELBO (analytic KL), or with ``iw > 1``
the IWAE bound over ``iw`` samples; trained by PyTorch's Adam (:func:`torch_steps`) and, diagonal, by JAX
and optax (:func:`jax_step`). PyTorch and JAX are imported only by the functions that use them.

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


def torch_steps(latent, iw, weights, batches, threads, seed, posterior="diagonal"):
    """({name: step(i)}, notes): the model trained by ``torch.optim.Adam`` in its default, foreach and fused
    forms (those this build has), on ``threads`` threads; step i takes batch i % len(batches) and reads the
    loss back, as gvae reads its."""
    import torch
    torch.set_num_threads(threads)
    xs = [torch.from_numpy(b) for b in batches]
    batch = batches[0].shape[0]
    variants = [("torch eager, Adam", {}), ("torch eager, Adam foreach", {"foreach": True}),
                ("torch eager, Adam fused", {"fused": True})]
    steps, notes = {}, []
    for name, kw in variants:
        torch.manual_seed(seed)
        model = torch_vae(latent, iw, weights, posterior=posterior)
        try:
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, **kw)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"{name}: not available ({type(exc).__name__}: {exc})")
            continue
        gen = torch.Generator().manual_seed(seed)

        def step(i, model=model, opt=opt, gen=gen):
            eps = torch.randn((iw, batch, latent), generator=gen)
            opt.zero_grad(set_to_none=True)
            loss = model.loss(xs[i % len(xs)], eps)
            loss.backward()
            opt.step()
            float(loss.detach())
        try:
            step(0)
        except Exception as exc:  # noqa: BLE001 - e.g. fused Adam without a CPU kernel
            notes.append(f"{name}: not available ({type(exc).__name__}: {exc})")
            continue
        steps[name] = step
    return steps, notes


def jax_step(latent, iw, weights, batches, seed):
    """step(i): one jitted step of the diagonal model, value_and_grad of :func:`torch_vae`'s loss and optax's
    Adam, the noise drawn inside; parameters, optimiser state and key donated; the loss read back every
    step. Batch i % len(batches)."""
    import jax
    import jax.numpy as jnp
    import optax
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in weights]
    opt = optax.adam(1e-3)

    def mlp(layers, h):
        for W, b in layers[:-1]:
            h = jax.nn.elu(h @ W + b)
        W, b = layers[-1]
        return h @ W + b

    def loss_fn(params, x, eps):
        head = mlp(params[:3], x)
        mu, s = head[:, :latent], head[:, latent:]
        sigma = jax.nn.softplus(s) + 1e-4
        z = mu + sigma * eps
        logits = mlp(params[3:], z)
        rec = jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)
        if iw == 1:
            kl = 0.5 * jnp.sum(mu * mu + sigma * sigma - 1.0, -1) - jnp.sum(jnp.log(sigma), -1)
            return jnp.mean(kl - rec[0])
        log_q = jnp.sum(-0.5 * eps * eps - jnp.log(sigma), -1)
        log_p = jnp.sum(-0.5 * z * z, -1)
        return -jnp.mean(jax.nn.logsumexp(rec + log_p - log_q, axis=0) - math.log(iw))

    def step(params, state, key, x):
        key, sub = jax.random.split(key)
        eps = jax.random.normal(sub, (iw, x.shape[0], latent), dtype=jnp.float32)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, eps)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, key, loss

    compiled = jax.jit(step, donate_argnums=(0, 1, 2))
    xs = [jnp.asarray(b) for b in batches]
    holder = {"params": params, "state": opt.init(params), "key": jax.random.PRNGKey(seed)}

    def run(i):
        holder["params"], holder["state"], holder["key"], loss = compiled(
            holder["params"], holder["state"], holder["key"], xs[i % len(xs)])
        float(loss)
    run(0)
    return run
