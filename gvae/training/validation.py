"""The numbers a run is validated and tested on while it trains: the ELBO over a data set (nats per
image, and in bits per dimension for continuous data), and a classifier's error, rate and objective (the
deep variational information bottleneck, :mod:`gvae.model.vib`, with the paper's 12 posterior samples per
image at test time). Batched, without taping, on the device the data live on."""
import math

import numpy as np

from .. import ops
from ..kernels import array_module, to_host
from ..model.objectives import elbo
from ..model.vib import predict

# Importance samples and test images of the log p(x) estimate the models beyond the VAE report in their
# summaries (what gvae eval --iw-samples 1000 --limit 1000 gives a VAE), and images a pass.
LOG_PX_SAMPLES, LOG_PX_IMAGES, LOG_PX_BATCH = 1000, 1000, 10

# Posterior samples per image at test time, as Alemi et al. evaluate: the class probabilities are the
# softmax averaged over them.
TEST_SAMPLES = 12


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


def dataset_elbo(model, params, x, rng, batch_size=500, n_samples=1, kl="analytic"):
    """Mean ELBO per data point (nats) over the rows of x, with fresh noise from ``rng``: a host float
    (the one read back from the device)."""
    return float(per_example_elbo(model, params, x, rng, batch_size, n_samples, kl).mean())


def per_example_elbo(model, params, x, rng, batch_size=500, n_samples=1, kl="analytic"):
    """The ELBO of every row of x, float64 (N,) on x's device, in nats of the data (see
    Likelihood.nats_offset)."""
    xp = array_module(x)
    out = xp.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        eps = rng.standard_normal((n_samples, len(xb), model.noise_size), dtype=model.dtype)
        out[start:start + len(xb)] = elbo(model, params, xb, eps, kl)
    return out + model.likelihood.nats_offset()


def bits_per_dim(model, nats):
    """For continuous likelihoods: {name + "_bits_per_dim": -value / (n log 2)} of each entry of ``nats``
    (name -> nats per image); {} for binary data."""
    if not model.likelihood.continuous:
        return {}
    return {f"{k}_bits_per_dim": -v / (model.n_in * math.log(2)) for k, v in nats.items()}


# The SVM's regularisation C tried on the validation set, as the VCCA paper tunes it.
SVM_C = (0.01, 0.1, 1.0, 10.0)
# The C that Wang et al.'s own code tries for its one-vs-one SVM.
PAIRWISE_SVM_C = (0.1, 1.0, 10.0)


def linear_svm_error(train, valid, test, cs=SVM_C):
    """The test error of a linear SVM on codes, as Wang et al. measure VCCA: each of ``train``, ``valid``,
    ``test`` is (codes (N, D), labels (N,)) on the host. The codes are standardised by the training set's
    mean and deviation, one-vs-rest linear SVMs (scikit-learn's LinearSVC, squared hinge, primal) are fitted
    on the training set for each C of ``cs``, and the C with the lowest validation error is tested.
    Returns {"svm_test_error", "svm_valid_error", "svm_c"} as floats. Needs scikit-learn (gvae[eval])."""
    from sklearn.svm import LinearSVC

    mean, scale = train[0].mean(axis=0), train[0].std(axis=0) + 1e-12
    norm = [((codes - mean) / scale, labels) for codes, labels in (train, valid, test)]
    return _tuned("svm", lambda c: LinearSVC(C=c, dual=False, max_iter=5000), norm, cs)


def pairwise_svm_error(train, valid, test, cs=PAIRWISE_SVM_C):
    """The test error of the linear SVM of Wang et al.'s own VCCA code, on the same sets as
    :func:`linear_svm_error`: scikit-learn's SVC with a linear kernel (libsvm: one classifier per pair of
    classes, 45 for 10, and their majority vote; hinge loss, dual) on the raw codes, for each C of ``cs``,
    the C with the lowest validation error tested. Its regions are intersections of the pairs' half-spaces,
    which one-vs-rest's ten hyperplanes cannot always draw. Returns {"svm_ovo_test_error",
    "svm_ovo_valid_error", "svm_ovo_c"} as floats. Needs scikit-learn (gvae[eval])."""
    from sklearn.svm import SVC

    return _tuned("svm_ovo", lambda c: SVC(C=c, kernel="linear"), (train, valid, test), cs)


def _tuned(name, make, sets, cs):
    """Fit ``make(c)`` on sets[0] for each c of ``cs``; test the one with the lowest error on sets[1]."""
    train, valid, test = sets
    best = None
    for c in cs:
        svm = make(c).fit(*train)
        error = float((svm.predict(valid[0]) != valid[1]).mean())
        if best is None or error < best[0]:
            best = (error, c, svm)
    error, c, svm = best
    return {f"{name}_test_error": float((svm.predict(test[0]) != test[1]).mean()), f"{name}_valid_error": error,
            f"{name}_c": c}


def standard_normal(rng, shape, dtype):
    """The noise of a reparameterised Gaussian pass."""
    return rng.standard_normal(shape, dtype=dtype)


def log_px_estimate(log_weights, noise_size, dtype, x, rng, samples=LOG_PX_SAMPLES, images=LOG_PX_IMAGES,
                    batch_size=LOG_PX_BATCH, noise=standard_normal):
    """The mean over the first ``images`` rows of x of log (1/K) sum_k w_k, K = ``samples``: an importance
    sampling bound on log p(x) (the IWAE bound L_K; with one sample the mean log-weight, an ELBO) whose
    log-weights ``log_weights(xb, eps)`` gives, (K, B),
    for noise eps (K, B, ``noise_size``) of ``dtype`` drawn from ``rng`` by ``noise(rng, shape, dtype)``.
    Returns (estimate, images used): a host float, one read."""
    n = min(images, len(x))
    total = 0.0  # a device scalar after the first batch
    for lo in range(0, n, batch_size):
        xb = x[lo:min(lo + batch_size, n)]
        eps = noise(rng, (samples, len(xb), noise_size), dtype)
        total = total + ops.log_mean_exp(log_weights(xb, eps), axis=0)[0].astype(np.float64).sum()
    return float(to_host(total)) / n, n


def log_px_summary(log_weights, model, x, rng, noise=standard_normal, samples=LOG_PX_SAMPLES):
    """A test summary's importance-sampled log p(x): {"test_log_px": :func:`log_px_estimate` of
    ``log_weights`` on x with ``samples`` draws of ``noise`` of ``model.noise_size`` from ``rng``, in nats
    of the data, "log_px_samples", "log_px_images"}."""
    estimate, n = log_px_estimate(log_weights, model.noise_size, model.dtype, x, rng, samples=samples, noise=noise)
    return {"test_log_px": estimate + model.likelihood.nats_offset(), "log_px_samples": samples,
            "log_px_images": n}
