"""The real training step: :meth:`gvae.training.Trainer.step` (value_and_grad into the gradient buffer, norm, Adam)."""
import tempfile

import numpy as np

from gvae.training import TrainConfig, Trainer

N_IN = 784
N_BATCHES = 4


class TrainingStep:
    """One Adam step of the 784-500-500-16 ELU VAE, Bernoulli decoder, float32, analytic KL."""

    params = [[50, 100, 500]]
    param_names = ["batch"]
    timeout = 180

    def setup(self, batch):
        rng = np.random.default_rng(0)
        n = batch * N_BATCHES
        x = rng.random((n, N_IN), dtype=np.float32)
        y = np.zeros(n, dtype=np.int64)
        data = {"train": (x, y), "valid": (x[:batch], y[:batch]), "test": (x[:batch], y[:batch])}
        binary = (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)
        self.batches = [np.ascontiguousarray(binary[i * batch:(i + 1) * batch]) for i in range(N_BATCHES)]
        self.tmp = tempfile.TemporaryDirectory()  # Trainer only writes there in fit()/save()
        config = TrainConfig(latent=16, hidden=(500, 500), activation="elu", likelihood="bernoulli",
                             batch_size=batch, kl="analytic", dtype="float32", seed=0)
        self.trainer = Trainer(config, data, self.tmp.name, progress=False, quiet=True)
        self.i = 0
        for _ in range(3):  # Numba compilation and first-touch of the work buffers
            self._step()

    def teardown(self, batch):
        self.tmp.cleanup()

    def _step(self):
        self.i += 1
        if self.trainer.step(self.batches[self.i % N_BATCHES], 1.0) is None:
            raise RuntimeError("training step skipped: non-finite loss or gradient")

    def time_step(self, batch):
        self._step()

    def peakmem_step(self, batch):
        self._step()
