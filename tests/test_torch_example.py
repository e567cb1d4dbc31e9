"""examples/torch_banded_vae.py, the PyTorch VAE a user would copy: its posterior is the one it names and
its training steps lower the loss, for every posterior (small generated data; the MNIST run is an experiment)."""
import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch.distributions import MultivariateNormal, kl_divergence  # noqa: E402

spec = importlib.util.spec_from_file_location(
    "torch_banded_vae", Path(__file__).resolve().parents[1] / "examples" / "torch_banded_vae.py")
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


def test_the_extended_grid_head_is_the_factor_of_the_precision_it_scores_with():
    torch.manual_seed(0)
    model = example.VAE("extgrid", latent=6, hidden=(8,)).double()
    x = (torch.rand(3, 784, dtype=torch.float64) < 0.5).double()
    q = model.q(x)
    L = torch.zeros(3, 6, 6, dtype=torch.float64)
    raw = model.enc(x)[:, 6:].unflatten(-1, (5, 6))
    rows, cols = model.rows_cols
    for i in range(6):  # extended grid on R x C, wrap-around masked
        r, c = divmod(i, cols)
        L[:, i, i] = torch.nn.functional.softplus(raw[:, 0, i]) + example.FLOOR
        for k, (dr, dc) in enumerate([(0, -1), (-1, 1), (-1, 0), (-1, -1)], start=1):  # offsets 1, C-1, C, C+1
            if 0 <= r + dr < rows and 0 <= c + dc < cols:
                L[:, i, (r + dr) * cols + c + dc] = raw[:, k, i]
    dense = MultivariateNormal(q.loc, precision_matrix=L @ L.mT)
    z = torch.randn(3, 6, dtype=torch.float64)
    torch.testing.assert_close(q.log_prob(z), dense.log_prob(z))
    prior = MultivariateNormal(torch.zeros(6, dtype=torch.float64), torch.eye(6, dtype=torch.float64))
    torch.testing.assert_close(kl_divergence(q, model.prior), kl_divergence(dense, prior))


@pytest.mark.slow
@pytest.mark.parametrize("posterior", example.POSTERIORS)
def test_training_steps_lower_the_loss_on_a_fixed_batch(posterior):
    torch.manual_seed(1)
    model = example.VAE(posterior, latent=6, hidden=(16,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = (torch.rand(20, 784) < 0.3).float()
    first = example.train_step(model, opt, x)
    for _ in range(40):
        last = example.train_step(model, opt, x)
    assert torch.isfinite(last) and last < first - 50


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--posterior", "grid"], ["--hidden", "0"]])
def test_bad_arguments_are_refused_with_a_message(argv, capsys):
    with pytest.raises(SystemExit):
        example.parse_args(argv)
    assert "error" in capsys.readouterr().err
