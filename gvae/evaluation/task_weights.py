"""The log-weights of a task that gives its own (:meth:`gvae.training.tasks.Reading.log_weights`: binary and
autoregressive latents, the deep exponential families, HVM's extended space (z, lambda)) as a source of
:func:`gvae.evaluation.evaluate.evaluate`: ``gvae eval`` estimates log p(x) of such runs with the VAE's
batching, noise streams, progress file and checks."""
import numpy as np

from ..kernels import array_module
from .evaluate import LogWeightSource

# Arrays a pass holds per draw and row for each unit of the model's layers (pre-activation, output,
# scratch), as :func:`gvae.evaluation.evaluate.sample_chunk` counts a VAE's.
ARRAYS_PER_UNIT = 3


class TaskWeights(LogWeightSource):
    """The log-weights of a task's ``reading`` (a :class:`gvae.training.tasks.Reading` whose :meth:`log_weights`
    gives them), noise drawn by its ``noise``.

    The memory of a pass is counted as if every layer of the model ran once per draw: the output width of
    each of its weight matrices, plus the noise (an upper bound where an encoder runs once per row)."""

    def __init__(self, reading):
        model = reading.model
        self.reading, self.dtype, self.noise_size = reading, model.dtype, model.noise_size
        self.offset = reading.nats_offset()
        self.units = self.noise_size + sum(shape[-1] for shape in model.param_shapes().values() if len(shape) == 2)

    def draw(self, rng, shape):
        return self.reading.noise(rng, (*shape, self.noise_size), self.dtype)

    def samples_per_pass(self, batch_size, memory_bytes):
        per_sample = ARRAYS_PER_UNIT * batch_size * self.units * self.dtype.itemsize
        return max(1, int(memory_bytes // per_sample))

    def log_weights_into(self, params, xb, eps, out):
        out[...] = self.reading.log_weights(params)(xb, eps) + self.offset

    def elbo(self, params, x, rng, kl, batch_size=500):
        """The log-weight of one draw a row, in batches of ``batch_size`` rows (the ELBO's estimate, as the
        task's summary reports it there with the noise of EVAL_SEED); ``kl`` does not apply: these bounds
        are sampled whole."""
        out = array_module(x).empty(len(x), dtype=np.float64)
        log_weights = self.reading.log_weights(params)
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            out[start:start + len(xb)] = log_weights(xb, self.draw(rng, (1, len(xb))))[0]
        return out + self.offset
