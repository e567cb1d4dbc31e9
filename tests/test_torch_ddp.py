"""examples/torch_ddp_banded_vae.py: gvae's banded posterior inside PyTorch's DistributedDataParallel
(gloo, 2 processes on this machine) takes the same steps as one process on the whole batch, in float64 to
rounding, for every posterior of the example (small generated data)."""
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("this PyTorch has no torch.distributed", allow_module_level=True)

EXAMPLES = str(Path(__file__).resolve().parents[1] / "examples")
if EXAMPLES not in sys.path:  # the spawned processes import the example by name, as the parent does
    sys.path.insert(0, EXAMPLES)
import torch_ddp_banded_vae as ddp  # noqa: E402


def _args(posterior):
    return Namespace(posterior=posterior, epochs=1, steps=None, latent=6, hidden=[8], batch_size=7, lr=1e-2, seed=3,
                     threads=1, dtype="float64", processes=None, limit=None)


@pytest.mark.slow
@pytest.mark.parametrize("posterior", ["extgrid", "chain", "diagonal"])
def test_two_processes_take_the_one_process_steps(posterior):
    """3 steps (the last batch uneven between the processes) from the same start: every process ends with
    the one-process parameters and the same losses, to float64 rounding."""
    data = np.random.default_rng(0).random((20, 784))
    args = _args(posterior)
    one_losses, one_flat = ddp.train(0, 1, args, data)
    start = time.perf_counter()
    results = ddp.run_processes(args, data, 2)
    seconds = time.perf_counter() - start
    assert [r[0] for r in results] == [0, 1]
    for _, losses, flat, _ in results:
        assert len(losses) == len(one_losses) == 3
        np.testing.assert_allclose(losses, one_losses, rtol=1e-12)
        np.testing.assert_allclose(flat, one_flat, rtol=1e-10, atol=1e-12)
    assert not np.allclose(one_flat, ddp.train(0, 1, Namespace(**{**vars(args), "steps": 1}), data)[1])  # it moved
    print(f"{posterior}: 2 processes, 3 steps in {seconds:.1f} s with the spawns")


def test_the_rows_of_a_batch_are_split_once():
    for batch in (1, 7, 100):
        for world in (1, 2, 3):
            parts = [ddp.rows(batch, r, world) for r in range(world)]
            assert sorted(np.concatenate(parts).tolist()) == list(range(batch))
