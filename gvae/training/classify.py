"""The training side of a classify run (the deep variational information bottleneck, :mod:`gvae.model.vib`):
its labelled data, checked, and its evaluation with the paper's 12 posterior samples per image.

A classify run trains on the raw intensities in [0, 1] (not binarised: nothing models the pixels) and
the labels of the data set; its validation and test numbers are the error of the averaged softmax's
argmax, the rate (mean KL(q(z|x) || N(0, I)), nats) and the objective J = E log q(y|z) - beta R."""
import numpy as np

from ..kernels import array_module, to_host
from ..model.vib import predict

# Posterior samples per image at test time, as Alemi et al. evaluate: the class probabilities are the
# softmax averaged over them.
TEST_SAMPLES = 12
SPLITS = ("train", "valid", "test")


def labels_of(data, classes):
    """The labels of every split of ``data`` ({split: (x, y)}) as int64 host arrays, checked against
    ``classes``: a tuple (train, valid, test). ValueError naming the split when one has no labels, labels
    of another length than its images, non-integer labels or labels outside 0..classes-1."""
    out = []
    for split in SPLITS:
        part = data[split]
        y = part[1] if len(part) > 1 else None
        if y is None:
            raise ValueError(f"task classify needs labels, and the {split} split has none; give a data set with "
                             f"{split}_y (--data)")
        y = np.asarray(y)
        n = len(part[0])
        if y.shape != (n,):
            raise ValueError(f"the {split} labels have shape {y.shape}, expected ({n},): one per image")
        if y.dtype.kind not in "iu":
            raise ValueError(f"the {split} labels have dtype {y.dtype}, expected integer class labels")
        if n and (y.min() < 0 or y.max() >= classes):
            raise ValueError(f"the {split} labels run from {y.min()} to {y.max()}, outside 0..{classes - 1}; give "
                             f"--classes with the number of classes (the labels must be 0..C-1)")
        out.append(y.astype(np.int64))
    return tuple(out)


def classifier_scores(model, params, x, y, rng, beta, batch_size=500, n_samples=TEST_SAMPLES):
    """The classifier's numbers on x (N, n_in) with labels y (N,), both on one device, with ``n_samples``
    samples of z per image drawn from ``rng`` (that device's generator): a dict of host floats
    ``error`` (the fraction of images whose averaged softmax's argmax is not the label), ``rate`` (mean
    KL(q(z|x) || N(0, I)), nats), ``log_lik`` (mean over images and samples of log q(y|z), nats) and
    ``objective`` = log_lik - beta rate."""
    xp = array_module(x)
    sums = xp.zeros(3, dtype=np.float64)  # wrong predictions, log_lik, rate: summed on the device
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        eps = rng.standard_normal((n_samples, len(xb), model.noise_size), dtype=model.dtype)
        probs, log_lik, rate = predict(model, params, xb, yb, eps)
        sums += xp.stack([(probs.argmax(axis=-1) != yb).sum(), log_lik.sum(), rate.sum()]).astype(np.float64)
    wrong, log_lik, rate = (to_host(sums) / len(x)).tolist()
    return {"error": wrong, "rate": rate, "log_lik": log_lik, "objective": log_lik - beta * rate}
