"""Malformed input to the kernels and the command line: always a clear error naming the function and
what was wrong, never a crash inside a kernel or a silent wrong answer.

Each case starts from a valid call and corrupts one argument in one way (dtype, rank, shape, NaN/inf,
a non-positive diagonal, bad offsets, a foreign type). The per-step kernels propagate NaN instead (see PROPAGATING)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from gvae import kernels
from gvae.cli import main

ATTEMPTS = {"kernels": 0, "cli": 0}
# The per-step kernels propagate NaN as NumPy does (the trainer stops on non-finite losses) instead of
# paying a validation pass on every call; the band kernels and the rest refuse non-finite input.
PROPAGATING = {"bias_activation", "bernoulli_loglik", "diag_normal_kl", "log_mean_exp"}


def valid_calls(rng):
    """name -> (function, list of positional arguments) of valid calls, float64."""
    n, k, b = 12, 3, 4
    offsets = (0, 1, 4)
    L = rng.uniform(0.5, 1.5, (b, k, n))
    v = rng.standard_normal((2, b, n))
    h = rng.standard_normal((b, n))
    return {
        "band_solve_t": (kernels.band_solve_t, [L, offsets, v]),
        "band_solve": (kernels.band_solve, [L, offsets, v]),
        "band_matvec_t": (kernels.band_matvec_t, [L, offsets, v]),
        "band_matvec": (kernels.band_matvec, [L, offsets, v]),
        "band_logdet": (kernels.band_logdet, [L]),
        "band_trace_inv": (kernels.band_trace_inv, [L, offsets]),
        "band_diag_inv": (kernels.band_diag_inv, [L, offsets]),
        "log_mean_exp": (kernels.log_mean_exp, [v, 0]),
        "bias_activation": (kernels.bias_activation, [h.copy(), rng.standard_normal(n), "elu"]),
        "bernoulli_loglik": (kernels.bernoulli_loglik, [h, rng.random((b, n))]),
        "diag_normal_kl": (kernels.diag_normal_kl, [h, rng.uniform(0.5, 2, (b, n))]),
    }


def corruptions(args, rng):
    """(description, index of the argument replaced, corrupted value) for a valid call's ``args``.

    Shape and dtype mismatches only count where another array argument makes them wrong."""
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    out = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            nan = a.copy()
            # on a factor (…, K, n) the main diagonal: every kernel reads it, unlike unused band slots
            where = (rng.integers(a.shape[0]), 0, rng.integers(a.shape[2])) if a.ndim == 3 and a is args[0] \
                else np.unravel_index(rng.integers(a.size), a.shape)
            nan[where] = np.nan
            inf = a.copy()
            inf[where] = rng.choice([np.inf, -np.inf])
            bad = [("int dtype", a.astype(np.int64)), ("complex dtype", a.astype(np.complex128)),
                   ("bool dtype", a > 0), ("list", a.tolist()), ("string", "x"), ("nan", nan), ("inf", inf)]
            if len(arrays) > 1:
                bad += [("wrong last axis", a[..., :-1].copy()), ("float32 beside float64", a.astype(np.float32))]
        elif isinstance(a, tuple):
            bad = [("offsets not from 0", (1,) + a[1:]), ("offsets not increasing", (0, a[2], a[1])),
                   ("offset beyond n", a[:-1] + (99,)), ("too few offsets", a[:-1]), ("float offsets", (0.0, 1.5, 4)),
                   ("negative offset", (0, -1, 4))]
        else:
            continue
        out += [(desc, i, value) for desc, value in bad]
    return out


@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_kernels_refuse_malformed_input(seed, data):
    rng = np.random.default_rng(seed)
    calls = valid_calls(rng)
    name = data.draw(st.sampled_from(sorted(calls)))
    fun, args = calls[name]
    cases = corruptions(args, rng)
    desc, i, bad = data.draw(st.sampled_from(cases))
    corrupted = list(args)
    corrupted[i] = bad
    ATTEMPTS["kernels"] += 1
    if name in PROPAGATING and desc in ("nan", "inf"):
        try:
            result = fun(*corrupted)
        except (TypeError, ValueError) as err:
            assert str(err)
            return
        if desc == "nan":
            first = result[0] if isinstance(result, tuple) else result
            assert np.isnan(first).any(), f"{name}: a NaN input vanished from the output"
        return
    with pytest.raises((TypeError, ValueError)) as err:
        fun(*corrupted)
    assert str(err.value), f"{name} with {desc}: empty message"


def test_non_positive_diagonal_is_refused():
    L = np.ones((2, 2, 5))
    L[1, 0, 3] = -0.5
    for fun in (kernels.band_solve_t, kernels.band_matvec):
        with pytest.raises(ValueError, match="diagonal"):
            fun(L, (0, 1), np.ones(5))


BAD_FLAGS = [["--latent", "-3"], ["--latent", "x"], ["--hidden"], ["--hidden", "0"], ["--epochs", "0"],
             ["--lr", "-1"], ["--lr", "inf"], ["--batch-size", "1.5"], ["--posterior", "tridiagonal"],
             ["--activation", "gelu"], ["--likelihood", "poisson"], ["--kl", "exact"], ["--warmup", "-2"],
             ["--grid-shape", "2"], ["--iw-samples", "0"], ["--device", "tpu"], ["--clip-norm", "0"],
             ["--squash", "nan"], ["--dtype", "float16"], ["--schedule", "cosine"], ["--seed", "1e3"]]


@given(flags=st.lists(st.sampled_from(BAD_FLAGS), min_size=1, max_size=3))
def test_cli_refuses_bad_flags(flags, tmp_path_factory):
    ATTEMPTS["cli"] += 1
    argv = ["train", "--out", str(tmp_path_factory.mktemp("r"))] + [a for f in flags for a in f]
    try:  # refused by the parser (SystemExit) or by the configuration's checks (status returned)
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2


def test_cli_config_errors_are_clear(tmp_path, capsys):
    data = tmp_path / "d.npz"
    x = np.random.default_rng(0).random((10, 784)).astype(np.float32)
    np.savez(data, **{f"{s}_x": x for s in ("train", "valid", "test")},
             **{f"{s}_y": np.zeros(10) for s in ("train", "valid", "test")})
    cases = [(["--posterior", "grid", "--latent", "13"], "latent dimension 13 has no r x c lattice"),
             (["--posterior", "grid", "--grid-shape", "3", "5"], "does not hold the latent dimension 16"),
             (["--posterior", "chain", "--grid-shape", "4", "4"], "only to the grid and extgrid"),
             (["--samples", "2", "--iw-samples", "3"], "not both")]
    for flags, message in cases:
        assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--quiet"] + flags) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    assert main(["train", "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "bad.npz" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "there is no run folder at" in capsys.readouterr().err


def test_report_attempts(capsys):
    """Prints how many malformed inputs the Hypothesis tests above tried (run after them)."""
    with capsys.disabled():
        print(f"\nmalformed inputs tried: kernels {ATTEMPTS['kernels']}, cli {ATTEMPTS['cli']}")
