"""examples/jax_sharded_banded_vae.py: gvae's banded posterior under shard_map over 2 host devices takes
the same steps as one device on the whole batch, in float64, for every posterior of the example
(small generated data; in a subprocess, since XLA's host device count is fixed when JAX starts): the
gradient of a step to rounding, the losses of three steps to 1e-6."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

SCRIPT = r"""
import json, sys, time
from argparse import Namespace
import numpy as np
sys.path.insert(0, sys.argv[1])
import jax_sharded_banded_vae as ex
ex.host_devices(2)
import jax
out = {"devices": len(jax.devices())}
data = np.random.default_rng(0).random((24, 784))
jax.config.update("jax_enable_x64", True)
from jax_banded_vae import init
for posterior in ("extgrid", "chain", "diagonal"):
    params = init(jax.random.PRNGKey(1), posterior, 6, (8,))
    x = (np.random.default_rng(1).random((8, 784)) < 0.5).astype(np.float64)
    eps = np.random.default_rng(2).standard_normal((8, 6))
    grads = [jax.tree.leaves(ex.make_grad(posterior, 6, d)(params, x, eps)) for d in (1, 2)]
    grad_rel = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(a))))
                   for a, b in zip(*grads) if np.max(np.abs(np.asarray(a)), initial=0) > 0)  # per array, of its largest
    runs = {}
    for devices in (1, 2):
        args = Namespace(posterior=posterior, epochs=1, steps=3, latent=6, hidden=[8], batch_size=8, lr=1e-2, seed=3,
                         dtype="float64", devices=devices, limit=None)
        start = time.perf_counter()
        losses, flat = ex.train(args, data)
        runs[devices] = (losses, flat, time.perf_counter() - start)
    (l1, f1, _), (l2, f2, s2) = runs[1], runs[2]
    out[posterior] = {"grad_rel": grad_rel, "losses": [l1, l2], "max_rel_param": float(np.max(np.abs(f2 - f1) / (np.abs(f1) + 1e-12))),
                      "moved": float(np.max(np.abs(f1 - ex.train(Namespace(**{**vars(args), "devices": 1, "steps": 1}),
                                                                   data)[1]))), "seconds_2": s2}
# A factor shared by every shard (replicated) against right-hand sides split over them: its gradient is
# the shards' contributions summed (gvae.jax's backward adds them itself, as JAX does for its own ops).
import gvae.jax as gj
from jax.sharding import Mesh, PartitionSpec as P
rng = np.random.default_rng(4)
L = np.concatenate([rng.uniform(0.5, 1.5, (1, 5)), rng.standard_normal((1, 5)) * 0.3])
v = rng.standard_normal((6, 5))
loss = lambda L, v: (gj.band_solve_t(L, (0, 1), v) ** 2).sum() + gj.band_logdet(L) + gj.band_trace_inv(L, (0, 1))
whole = jax.grad(loss, argnums=(0, 1))(L, v)
mesh = Mesh(np.array(jax.devices()), ("b",))
f = jax.shard_map(lambda L, v: jax.grad(lambda L, v: (gj.band_solve_t(L, (0, 1), v) ** 2).sum()
                                        + (gj.band_logdet(L) + gj.band_trace_inv(L, (0, 1))) / 2, argnums=(0, 1))(L, v),
                  mesh=mesh, in_specs=(P(), P("b")), out_specs=(P(), P("b")))
split = jax.jit(f)(L, v)
out["shared_factor"] = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(whole, split)]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_two_devices_take_the_one_device_steps():
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(EXAMPLES)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    for posterior in ("extgrid", "chain", "diagonal"):
        r = out[posterior]
        one, two = r["losses"]
        assert len(one) == len(two) == 3
        # The gradient (the loss and every parameter's) of one step: the same to rounding. Adam's first steps
        # divide each gradient by its own size, so a component near zero whose last bits differ (the shards'
        # sums are added in another order) moves by up to the learning rate: later losses agree to 1e-6.
        assert r["grad_rel"] < 1e-9
        assert one[0] == pytest.approx(two[0], rel=1e-12) and one == pytest.approx(two, rel=1e-6)
        assert r["moved"] > 1e-4
    assert max(out["shared_factor"]) < 1e-12
