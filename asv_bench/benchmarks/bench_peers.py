"""The training step against its peers, as ratios: gvae's :meth:`Trainer.step` over JAX's jitted step and
over PyTorch's eager step of the same 784-500-500-16 ELU VAE (Bernoulli decoder, batch 100, float32, Adam),
the peers as benchmarks/step_peers.py builds them. The history then shows where gvae stands against its
peers on each machine, not only against itself.

Each ``track_`` builds gvae's Trainer and the peer in one process, warms both, then times blocks of
``BLOCK`` steps alternately (the order swapped every round) and returns the median over the rounds of
(gvae's block median / the peer's): noise that hits a round hits both. One thread: the process pinned to
one core (XLA obeys only that), two threads: gvae's two threads, PyTorch's two, XLA's pool on the cores it
is given. A machine with fewer cores, or a Python without JAX, optax or PyTorch, skips the row."""
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Benchmark, binary_batches

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "step_peers.py"
LATENT, HIDDEN, BATCH = 16, 500, 100
ROUNDS, BLOCK, WARMUP = 15, 10, 10
OBJECTIVES = {"elbo": 1, "iwae5": 5}  # importance samples


def _peers():
    """benchmarks/step_peers.py as a module (it is a script's neighbour, not a package)."""
    spec = importlib.util.spec_from_file_location("gvae_step_peers", PEERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paired_ratio(step, peer):
    """Median over ROUNDS rounds of (median of a block of ``step`` / median of a block of ``peer``)."""
    clock, i, ratios = time.perf_counter, 0, []
    for r in range(ROUNDS):
        medians = {}
        for name, fn in ((("gvae", step), ("peer", peer)) if r % 2 == 0 else (("peer", peer), ("gvae", step))):
            times = []
            for _ in range(BLOCK):
                i += 1
                start = clock()
                fn(i)
                times.append(clock() - start)
            medians[name] = np.median(times)
        ratios.append(medians["gvae"] / medians["peer"])
    return float(np.median(ratios))


class StepRatio(Benchmark):
    """gvae's step time over a peer's, per objective and thread count (below 1: gvae is faster)."""

    params = [list(OBJECTIVES), [1, 2]]
    param_names = ["objective", "threads"]
    unit = "ratio"
    tmp = None

    def setup(self, objective, threads):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < threads:
            raise NotImplementedError(f"{threads} threads asked for on {len(cores)} core(s)")
        try:
            import jax  # noqa: F401
            import optax  # noqa: F401
            import torch  # noqa: F401
        except ImportError as exc:
            raise NotImplementedError(f"a peer is not installed: {exc}") from None
        os.sched_setaffinity(0, set(cores[:threads]))  # before XLA and PyTorch size their pools
        from gvae import kernels
        from gvae.training import TrainConfig, Trainer
        kernels.set_threads(threads)
        peers = _peers()
        data, batches = binary_batches(BATCH, 8)
        iw = OBJECTIVES[objective]
        self.tmp = tempfile.TemporaryDirectory()
        config = TrainConfig(hidden=(HIDDEN, HIDDEN), latent=LATENT, activation="elu", likelihood="bernoulli",
                             batch_size=BATCH, kl="analytic", iw_samples=iw, dtype="float32", seed=0)
        trainer = Trainer(config, data, self.tmp.name, progress=False, quiet=True)

        def gvae_step(i):
            if trainer.step(batches[i % len(batches)], 1.0) is None:
                raise RuntimeError("gvae skipped a step: non-finite loss or gradient")
        weights = peers.init_weights(HIDDEN, LATENT, np.random.default_rng(0))
        torch_steps, _ = peers.torch_steps(LATENT, iw, weights, batches, threads, 0)
        self.steps = {"gvae": gvae_step, "jax": peers.jax_step(LATENT, iw, weights, batches, 0),
                      "torch": torch_steps["torch eager, Adam"]}
        for step in self.steps.values():
            for i in range(WARMUP):
                step(i)

    def teardown(self, *params):
        if self.tmp is not None:
            self.tmp.cleanup()

    def track_vs_jax(self, objective, threads):
        return paired_ratio(self.steps["gvae"], self.steps["jax"])

    def track_vs_torch(self, objective, threads):
        return paired_ratio(self.steps["gvae"], self.steps["torch"])
