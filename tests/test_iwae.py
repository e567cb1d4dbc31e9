"""IWAE: the log-mean-exp kernel and its gradient, the bound's gradient, and importance sampling
checked against a model whose log-likelihood is known exactly (linear-Gaussian factor analysis)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import logsumexp, softmax
from scipy.stats import multivariate_normal

from gvae import kernels
from gvae.evaluation.evaluate import importance_sampling
from gvae.training.validation import per_example_elbo
from gvae.model import VAE
from gvae.model.objectives import iwae_bound
from tests.gradcheck import check_vjp
from tests.helpers import Passes


@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_log_mean_exp_against_scipy(data, dtype):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    scale = data.draw(st.sampled_from([1.0, 100.0, 1e4]))
    x = (np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal(shape) * scale).astype(dtype)
    value, weights = kernels.log_mean_exp(x, axis)
    x64 = x.astype(np.float64)
    ref = logsumexp(x64, axis=axis) - np.log(shape[axis])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(value, ref, **tol)
    np.testing.assert_allclose(weights, softmax(x64, axis=axis), **tol)
    assert value.dtype == dtype and weights.dtype == dtype


@pytest.mark.parametrize("shape, axis", [((5, 100), 0), ((4, 3, 7), 1), ((6, 9), 1), ((2000, 3), 0), ((3, 1500), 1)])
def test_log_mean_exp_is_recorded_in_place_along_any_axis_and_replayed(split_everything, shape, axis):
    """No transposed copy: the kernel reads K along the axis where it lies, in blocks of pairs on the
    threads, so that a recorded step replays it; the replay recomputes it from the array's new values."""
    from gvae.kernels.cpu import programs
    kernels.set_threads(2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32) * 20
    plain = kernels.log_mean_exp(x, axis)
    with programs.recording() as program:
        value, weights = kernels.log_mean_exp(x, axis)
    assert program.refused is None
    np.testing.assert_array_equal(value, plain[0])
    np.testing.assert_array_equal(weights, plain[1])
    x[...] = rng.standard_normal(shape) * 20
    value[...], weights[...] = np.nan, np.nan
    program.run()
    expected = kernels.log_mean_exp(x, axis)
    np.testing.assert_array_equal(value, expected[0])
    np.testing.assert_array_equal(weights, expected[1])
    np.testing.assert_allclose(value, logsumexp(x.astype(np.float64), axis=axis) - np.log(shape[axis]), rtol=1e-5,
                               atol=1e-5)


def test_log_mean_exp_of_a_column_slice_is_recorded_with_its_copy(split_everything):
    """The evaluation reduces logw[:, :b] of a wider buffer: the front's copy to a contiguous array is a
    kernel's, so the recording holds it and a replay reads the buffer's new values."""
    from gvae.kernels.cpu import programs
    kernels.set_threads(2)
    rng = np.random.default_rng(6)
    buf = rng.standard_normal((40, 30)).astype(np.float32)
    with programs.recording() as program:
        value, weights = kernels.log_mean_exp(buf[:, :17], axis=0)
    assert program.refused is None
    buf[...] = rng.standard_normal(buf.shape)
    value[...] = np.nan
    program.run()
    np.testing.assert_array_equal(value, kernels.log_mean_exp(np.ascontiguousarray(buf[:, :17]), axis=0)[0])


def test_log_mean_exp_edge_rows():
    x = np.array([[-np.inf, -np.inf], [0.0, -np.inf], [np.nan, 0.0]])
    value, weights = kernels.log_mean_exp(x, 1)
    assert value[0] == -np.inf and weights[0].tolist() == [0.5, 0.5]
    assert value[1] == pytest.approx(-np.log(2)) and weights[1].tolist() == [1.0, 0.0]
    assert np.isnan(value[2])
    with pytest.raises(ValueError, match="axis 2 out of range"):
        kernels.log_mean_exp(x, 2)


@pytest.mark.parametrize("posterior", ["diagonal", "chain", "rank1"])
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 4))
def test_iwae_bound_gradient(posterior, seed, k):
    rng = np.random.default_rng(seed)
    model = VAE(5, 4, [3], "tanh", posterior=posterior, dtype=np.float64)
    params = model.new_params(rng)
    views = {name: v + 0.3 * rng.standard_normal(v.shape) for name, v in params.views.items()}
    x = rng.random((3, 5))
    eps = rng.standard_normal((k, 3, 4))
    check_vjp(lambda p: iwae_bound(model, p, x, eps), [views], rtol=1e-4, atol=1e-7)


def factor_analysis(seed=0, n=5, d=2, points=40):
    """A linear-Gaussian VAE (no hidden layer, global psi) and the exact log p(x) of its data.

    The encoder (``full`` family) is set to the exact posterior N(S W psi^-1 (x - b), S),
    S^-1 = I + W psi^-1 W^T, with its mean shifted by 0.1 and its precision factor scaled by 0.8: a
    good proposal with bounded weights, but not the posterior itself (so K matters)."""
    rng = np.random.default_rng(seed)
    model = VAE(n, d, [], "tanh", posterior="full", likelihood="gaussian", dtype=np.float64)
    params = model.new_params(rng).views
    params["dec.b0"][...] = rng.standard_normal(n)
    params["lik.psi"][...] = rng.uniform(-1, 0.5, n)
    W, b = params["dec.W0"], params["dec.b0"]
    psi = np.logaddexp(0, params["lik.psi"]) + model.likelihood.floor
    precision = np.eye(d) + (W / psi) @ W.T
    A = (W / psi).T @ np.linalg.inv(precision)
    L = 0.8 * np.linalg.cholesky(precision)
    params["enc.W0"][...] = 0
    params["enc.W0"][:, :d] = A
    params["enc.b0"][:d] = -b @ A + 0.1
    for k in range(d):  # band rows of the full factor: row k holds L[i, i - k]
        row = np.array([L[i, i - k] if i >= k else 0.0 for i in range(d)])
        if k == 0:
            row = np.log(np.expm1(row - model.layers[0].family.floor))  # inverse of softplus + floor
        params["enc.b0"][d + k * d:d + (k + 1) * d] = row
    cov = W.T @ W + np.diag(psi)
    x = rng.multivariate_normal(b, cov, size=points)
    # reported values carry the likelihood's constant offset to nats of 8-bit data; so does the exact one
    return model, params, x, multivariate_normal(b, cov).logpdf(x) + model.likelihood.nats_offset()


def test_importance_sampling_converges_to_the_exact_log_likelihood():
    model, params, x, exact = factor_analysis()
    errors = []
    for k in (1, 10, 100, 2000):
        est = importance_sampling(model, params, x, k, k, progress=False)
        errors.append(np.mean(np.abs(est["log_likelihood"] - exact)))
    assert errors[-1] < 0.02, errors
    assert errors[3] < errors[2] < errors[1] < errors[0], errors
    elbo = per_example_elbo(model, params, x, np.random.default_rng(1), n_samples=200)
    assert np.mean(elbo) < np.mean(exact)  # never above log p(x) on average


def test_bounds_increase_with_k():
    model, params, x, exact = factor_analysis(seed=3, points=60)
    est = importance_sampling(model, params, x, 500, 0, ks=(1, 5, 50), progress=False)
    l1, l5, l50, lk = (np.mean(est[key]) for key in ("iwae_1", "iwae_5", "iwae_50", "log_likelihood"))
    # each gap exceeds the Monte Carlo noise of these means (~0.01 nats here) by far
    assert l1 + 0.02 < l5 < l50 + 0.01 and l50 <= lk + 0.01 and lk <= np.mean(exact) + 0.05


def test_memory_bound_chunks_the_samples():
    from gvae.evaluation.evaluate import sample_chunk
    model = VAE(784, 16, [500, 500], "elu")
    c = sample_chunk(model, 100, 64 * 2 ** 20)
    assert 1 <= c and 3 * 100 * (500 + 500 + 784 + 64) * 4 * c <= 64 * 2 ** 20


def test_importance_sampling_goes_on_after_any_batch_to_the_same_result():
    model, params, x, _ = factor_analysis(seed=5, points=23)
    settings = dict(ks=(1, 5), batch_size=5, progress=False)
    seen = []
    full = importance_sampling(model, params, x, 40, 7, **settings,
                               on_batch=lambda rows, out: seen.append((rows, {k: v.copy() for k, v in out.items()})))
    assert [rows for rows, _ in seen] == [5, 10, 15, 20, 23]
    for rows, arrays in seen:
        rest = importance_sampling(model, params, x, 40, 7, **settings, resume_from=(rows, arrays))
        for key in full:
            np.testing.assert_array_equal(rest[key], full[key])
    with pytest.raises(ValueError, match="multiple of 5"):
        importance_sampling(model, params, x, 40, 7, **settings, resume_from=(3, seen[0][1]))
    with pytest.raises(ValueError, match="iwae_5"):
        importance_sampling(model, params, x, 40, 7, **settings, resume_from=(5, {"log_likelihood": full["log_likelihood"]}))


def test_an_interrupted_evaluation_goes_on_from_its_partial_file(tmp_path, monkeypatch, one_thread):
    import gvae.evaluation.evaluate as ev
    model, params, x, _ = factor_analysis(seed=6, points=30)
    settings = dict(ks=(1, 5), seed=3, batch_size=5, progress=False)
    full, means, _ = ev.evaluate(model, params, x, 20, **settings)
    path = tmp_path / "progress.npz"
    real = ev._log_weights_into
    # one pass per batch here (20 samples fit one pass)
    monkeypatch.setattr(ev, "_log_weights_into", Passes(real, stop_at=4))
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(model, params, x, 20, **settings, partial=path, save_seconds=1e9)  # saved at the interrupt
    with np.load(path) as f:
        assert int(f["rows"]) == 15 and f["result_log_likelihood"].shape == (15,)
    calls = Passes(real)
    monkeypatch.setattr(ev, "_log_weights_into", calls)
    per, again, _ = ev.evaluate(model, params, x, 20, **settings, partial=path)
    assert calls.count == 4  # the three batches not done before, and one stored batch recomputed as a check
    assert again == means
    for key in full:
        np.testing.assert_array_equal(per[key], full[key])
    # Progress of other settings, or a damaged file, is not used: the evaluation starts over.
    for other in (dict(settings, seed=4), settings):
        if other is settings:
            path.write_bytes(b"not an npz")
        calls.count = 0
        _, result, _ = ev.evaluate(model, params, x, 20, **other, partial=path)
        assert calls.count == 6
        assert (result == means) == (other is settings)


@pytest.mark.parametrize("posterior", ["diagonal", "extgrid"])
def test_the_samples_of_a_pass_run_side_by_side_as_one_thread_computes_them(posterior, monkeypatch):
    """On gvae's threads each pass's samples are cut into one part per thread, each taken through the whole
    model on its own thread (evaluation/evaluate.py): the parts cover the pass and run on as many threads;
    the results are those of one thread but for the BLAS's rounding of products cut into rows (OpenBLAS's
    AVX2 kernels round some rows of a product differently when it has fewer rows), and the same bits on
    the same thread count."""
    import threading
    from gvae.evaluation import evaluate
    rng = np.random.default_rng(4)
    model = VAE(784, 16, [64, 48], "elu", posterior=posterior)
    params = model.new_params(np.random.default_rng(2)).views
    x = (rng.random((7, 784)) < 0.15).astype(np.float32)
    settings = dict(ks=(1, 5), batch_size=4, progress=False, memory_mb=1)  # passes of 22, 22 and 1 samples
    ran = []
    real = evaluate.log_ratio

    def watched(model, params, qs, zs):  # once per part, after its posterior pass
        ran.append((threading.get_ident(), zs[0].shape[0]))
        return real(model, params, qs, zs)
    monkeypatch.setattr(evaluate, "log_ratio", watched)
    results = {}
    try:
        for count in (1, 3, 3):
            kernels.set_threads(count)
            ran.clear()
            out = importance_sampling(model, params, x, 45, 3, **settings)
            if count in results:
                for key in out:
                    np.testing.assert_array_equal(out[key], results[count][key])
            results[count] = out
            # two batches of 4 and 3 rows, each 45 samples in passes of 22, 22 and 1: parts of 7, 7 and 8
            assert sum(c for _, c in ran) == 45 * 2 and len({ident for ident, _ in ran}) == count
            assert sorted(c for _, c in ran) == sorted([22, 22, 1] * 2 if count == 1 else [7, 7, 8, 7, 7, 8, 1] * 2)
    finally:
        kernels.set_threads(1)
    for key in results[1]:
        np.testing.assert_allclose(results[3][key], results[1][key], rtol=1e-6)  # float32 weights: an ulp is 6e-8


@pytest.mark.parametrize("case", ["one layer", "two layers", "gaussian"])
def test_the_decoder_runs_in_blocks_of_samples_with_the_results_of_whole_parts(case, monkeypatch):
    """On the CPU a part's samples go through the decoder and the likelihood in blocks of
    :func:`block_samples` (evaluation/evaluate.py): every sample decoded once, in blocks of the size the
    byte budget gives, and each weight the one a whole part computes (rows of the same products: the same
    bits where the BLAS rounds a row alike in products of any number of rows)."""
    from gvae.evaluation import evaluate
    rng = np.random.default_rng(5)
    if case == "one layer":
        model = VAE(784, 16, [64, 48], "elu", posterior="chain")
    elif case == "two layers":
        model = VAE(784, [8, 4], [[40], [24]], "tanh", posterior=["extgrid", "diagonal"], dtype=np.float64)
    else:
        model = VAE(30, 5, [20], "elu", posterior="full", likelihood="gaussian")
    params = model.new_params(np.random.default_rng(2)).views
    x = rng.random((8, model.n_in)).astype(model.dtype)  # two batches of 4 rows
    if case != "gaussian":
        x = (x < 0.15).astype(model.dtype)
    settings = dict(ks=(1, 5), batch_size=4, progress=False)
    decoded = []
    real = model.likelihood_params

    def watched(params, zs):
        decoded.append(zs[0].shape[0])
        return real(params, zs)
    monkeypatch.setattr(model, "likelihood_params", watched)
    widest = max(model.layers[0].decoder.sizes[1:] + (model.layers[1].encoder.sizes[1:] if len(model.layers) > 1
                                                       else []))
    results = {}
    for samples in (1, 3, 45):  # blocks of 1 and 3 samples, and whole parts
        monkeypatch.setattr(evaluate, "BLOCK_BYTES", samples * 4 * widest * model.dtype.itemsize)
        decoded.clear()
        results[samples] = importance_sampling(model, params, x, 45, 3, **settings)
        assert evaluate.block_samples(model, 4) == samples
        assert sum(decoded) == 45 * 2 and max(decoded) == min(samples, 45)  # two batches of 45 samples
        assert len(decoded) == 2 * -(-45 // samples)
    for samples in (1, 3):
        for key in results[45]:
            np.testing.assert_allclose(results[samples][key], results[45][key],
                                       rtol=1e-12 if model.dtype == np.float64 else 1e-6)
