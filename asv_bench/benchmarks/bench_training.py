"""The real training step: :meth:`gvae.training.Trainer.step` (value_and_grad into the gradient buffer, norm,
Adam) of a 784-500-500-d ELU VAE with a Bernoulli decoder, float32, on generated data held in memory."""
import tempfile

import numpy as np

from gvae.training import TrainConfig, Trainer

from .common import Benchmark, binary_batches

N_BATCHES = 4  # distinct batches cycled through


class _Step(Benchmark):
    """A Trainer on ``N_BATCHES`` generated binary batches, warmed up by ``setup_trainer``."""

    tmp = None  # asv calls teardown also after a setup that skipped (NotImplementedError)

    def setup_trainer(self, batch, **config):
        data, self.batches = binary_batches(batch, N_BATCHES)
        self.tmp = tempfile.TemporaryDirectory()  # Trainer only writes there in fit()/save()
        config = TrainConfig(hidden=(500, 500), activation="elu", likelihood="bernoulli", batch_size=batch,
                             kl="analytic", dtype="float32", seed=0, **config)
        self.trainer = Trainer(config, data, self.tmp.name, progress=False, quiet=True)
        self.i = 0
        for _ in range(3):  # Numba compilation and first-touch of the work buffers
            self._step()
        # then the step's trial of the tape against the replay (gvae.training.captured_step), so that every
        # timed step is of the way it chose
        while self.trainer.captured.trial is not None and self.i < 40:
            self._step()

    def teardown(self, *params):
        if self.tmp is not None:
            self.tmp.cleanup()

    def _step(self):
        self.i += 1
        if self.trainer.step(self.batches[self.i % N_BATCHES], 1.0) is None:
            raise RuntimeError("training step skipped: non-finite loss or gradient")


class TrainingStep(_Step):
    """One Adam step of the 784-500-500-16 VAE, diagonal posterior, ELBO with the analytic KL."""

    params = [[50, 100, 500]]
    param_names = ["batch"]

    def setup(self, batch):
        self.setup_trainer(batch, latent=16)

    def time_step(self, batch):
        self._step()

    def peakmem_step(self, batch):
        self._step()


# IWAE k=5 trains on 5 importance samples per image; the ELBO on one Monte Carlo sample.
OBJECTIVES = {"elbo": {}, "iwae5": {"iw_samples": 5}}


class FamilyStep(_Step):
    """One Adam step per posterior family and objective, batch 100, latent d = 16 (a 4 x 4 lattice) or
    64 (8 x 8); the full family (d diagonals in band storage) only at d = 16."""

    params = [["diagonal", "ar1", "rank1", "chain", "grid", "extgrid", "full"], list(OBJECTIVES), [16, 64]]
    param_names = ["posterior", "objective", "latent"]

    def setup(self, posterior, objective, latent):
        if posterior == "full" and latent > 16:
            raise NotImplementedError("the full family is benchmarked at d = 16 only")
        self.setup_trainer(100, posterior=posterior, latent=latent, **OBJECTIVES[objective])

    def time_step(self, posterior, objective, latent):
        self._step()
