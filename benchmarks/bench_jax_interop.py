"""Per-call cost of gvae.jax against calling :mod:`gvae.kernels` directly on NumPy arrays: ``band_matvec``
on a tiny 2 x 8 factor (the overhead alone), and on a chain factor of B = 100, d = 256 (float32), eagerly
and under ``jit``; and the gradient of sum(band_solve_t(L, b)) with respect to L under ``jit`` at that
size, against the same kernels called directly (the solve, the solve of the backward and ``band_outer``).
Prints microseconds per call (the median of repeats); timings belong here, not in the tests. Then the
posterior's head under ``jit``: the gradient of sum(z) + sum(KL) for an extended grid 4 x 4, B = 100,
float32, through ``band_head`` (one kernel call and one backward) against ``rsample`` and
``kl_to_standard_normal`` (the separate calls). Then one jitted Adam step of examples/jax_banded_vae.py
(784-500-500-16 ELU, B = 100) with each posterior, in interleaved rounds, and its ratio to the diagonal
posterior's step.

    python benchmarks/bench_jax_interop.py [--rounds 20]
"""
import os
import sys
import time
import timeit

import jax
import numpy as np

import gvae.jax as gj
from gvae import kernels
from gvae.io.arguments import ArgumentParser

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))  # the example VAE timed here


def per_call_us(f, number=500, repeat=7):
    f()  # compile (Numba and XLA) outside the timing
    return 1e6 * float(np.median(timeit.repeat(f, number=number, repeat=repeat))) / number


def chain(batch, n, rng):
    """A chain factor (batch, 2, n) with a positive diagonal, float32."""
    L = rng.uniform(-0.5, 0.5, (batch, 2, n)).astype(np.float32)
    L[:, 0] += 1.5
    L[:, 1, 0] = 0.0
    return L


def main():
    rng = np.random.default_rng(0)
    offsets = (0, 1)
    rows = []
    for label, L in (("2 x 8", np.ones((2, 8), np.float32)), ("100 x 2 x 256", chain(100, 256, rng))):
        x = rng.standard_normal(L.shape[:-2] + L.shape[-1:]).astype(np.float32)
        Lj, xj = jax.numpy.asarray(L), jax.numpy.asarray(x)
        jitted = jax.jit(lambda L, x: gj.band_matvec(L, offsets, x))
        rows += [(f"band_matvec {label}: gvae.kernels (NumPy)", lambda L=L, x=x: kernels.band_matvec(L, offsets, x)),
                 (f"band_matvec {label}: gvae.jax, eager",
                  lambda Lj=Lj, xj=xj: gj.band_matvec(Lj, offsets, xj).block_until_ready()),
                 (f"band_matvec {label}: gvae.jax, jit",
                  lambda Lj=Lj, xj=xj, f=jitted: f(Lj, xj).block_until_ready())]
    L = chain(100, 256, rng)
    b = rng.standard_normal((100, 256)).astype(np.float32)
    ones = np.ones_like(b)

    def direct_grad():
        y = kernels.band_solve_t(L, offsets, b)
        u = kernels.band_solve(L, offsets, ones, check=False)
        return kernels.band_outer(y, u, offsets, (100,), -1.0)

    grad = jax.jit(jax.grad(lambda L, b: gj.band_solve_t(L, offsets, b).sum()))
    Lj, bj = jax.numpy.asarray(L), jax.numpy.asarray(b)
    rows += [("grad of sum(band_solve_t) 100 x 2 x 256: the kernels directly", direct_grad),
             ("grad of sum(band_solve_t) 100 x 2 x 256: gvae.jax, jit", lambda: grad(Lj, bj).block_until_ready())]
    for label, f in rows:
        print(f"{label:64s} {per_call_us(f):8.1f} us")
    head_table(rng)


def head_table(rng, rounds=15):
    """The head through band_head against the separate calls, interleaved rounds, median us and ratio."""
    from gvae.model.lattice import extgrid_offsets, lattice_mask
    offsets = extgrid_offsets(4, 4)
    factor = (rng.uniform(-0.3, 0.3, (100, len(offsets), 16)) * lattice_mask(offsets, 4, 4)).astype(np.float32)
    factor[:, 0] = rng.uniform(0.8, 1.5, (100, 16))  # the diagonal: positive
    loc = rng.standard_normal((100, 16)).astype(np.float32)
    key = jax.random.key(2)

    def head(L, mu):
        z, _, kl = gj.BandedPrecisionNormal(mu, L, offsets).rsample_log_prob_kl(key)
        return z.sum() + kl.sum()

    def separate(L, mu):
        q = gj.BandedPrecisionNormal(mu, L, offsets)
        return q.rsample(key).sum() + q.kl_to_standard_normal().sum()

    calls = {name: (lambda g=jax.jit(jax.grad(f, (0, 1))), L=jax.numpy.asarray(factor), mu=jax.numpy.asarray(loc):
                    jax.block_until_ready(g(L, mu))) for name, f in (("head", head), ("separate", separate))}
    times = {name: [] for name in calls}
    for name, f in calls.items():
        f()  # compile
    for _ in range(rounds):
        for name, f in calls.items():
            times[name].append(per_call_us(f, number=100, repeat=3))
    ratio = np.median(np.asarray(times["separate"]) / np.asarray(times["head"]))
    print(f"\nhead under jit, grad of sum(z) + sum(KL), extended grid 4 x 4, B = 100, float32 ({rounds} rounds):"
          f" band_head {np.median(times['head']):.1f} us, rsample + kl_to_standard_normal "
          f"{np.median(times['separate']):.1f} us, {ratio:.2f}x")


def vae_steps(rounds, block=20):
    """Median ms per jitted step of the example VAE for each posterior, over ``rounds`` interleaved blocks,
    and the medians of the per-round ratios to the diagonal posterior's step."""
    import optax
    from jax_banded_vae import POSTERIORS, init, make_step

    x = (np.random.default_rng(0).random((8, 100, 784)) < 0.13).astype(np.float32)
    keys = jax.random.split(jax.random.key(1), rounds * block + block)
    runs = {}
    for posterior in POSTERIORS:
        params = init(jax.random.key(0), posterior)
        optimizer = optax.adam(1e-3)
        runs[posterior] = [make_step(optimizer, posterior, 16), params, optimizer.init(params)]

    def timed(posterior, start):
        step, params, state = runs[posterior]
        begin = time.perf_counter()
        for i in range(block):
            params, state, loss = step(params, state, x[i % len(x)], keys[start + i])
        loss.block_until_ready()
        runs[posterior][1:] = [params, state]
        return (time.perf_counter() - begin) / block

    for posterior in POSTERIORS:
        timed(posterior, 0)  # compile
    seconds = {posterior: [] for posterior in POSTERIORS}
    for r in range(rounds):
        for posterior in POSTERIORS:
            seconds[posterior].append(timed(posterior, (r + 1) * block))
    print(f"\none jitted Adam step of examples/jax_banded_vae.py (784-500-500-16 ELU, B = 100), {rounds} rounds "
          f"of {block} steps interleaved")
    diagonal = np.asarray(seconds["diagonal"])
    for posterior in POSTERIORS:
        ms = np.median(seconds[posterior]) * 1e3
        print(f"{posterior:10s} {ms:7.2f} ms  {np.median(np.asarray(seconds[posterior]) / diagonal):.3f}x diagonal")


if __name__ == "__main__":
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds of the VAE steps")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    main()
    vae_steps(args.rounds)
