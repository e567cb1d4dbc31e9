"""What one gvae training step does on a CUDA GPU: the launches and copies it makes, and whether its
forward and backward pass replays from a CUDA graph (run by tools/gpu_check.sh; needs CuPy, a GPU and,
for the counts, PyTorch's profiler).

    python tools/gpu_probe.py counts [--posterior diagonal extgrid] [--batch 100] [--iw 1]
    python tools/gpu_probe.py profile [--posterior diagonal] [--batch 100]
    python tools/gpu_probe.py graph  [--posterior diagonal] [--batch 100]

``counts``: :meth:`gvae.training.Trainer.step` on ``device="cuda"`` under ``torch.profiler`` (CUPTI sees
every kernel of the process, CuPy's and cuBLAS's included), after warm-up steps; per step, the kernels
launched, the copies between host and device by direction, and the memsets.

``profile``: 300 steps under ``cProfile``, the functions with the most time of their own: where the
host spends a step that the GPU waits for.

``graph``: the step's value_and_grad (``Trainer.step_fn``) on fixed inputs, captured on a CuPy stream
(``Stream.begin_capture``/``end_capture``) once the memory pool holds every block it needs, replayed, and
compared bit for bit with the eager call on the same inputs; then both timed. A capture that CuPy or the
step refuses is reported with its error: it says what in the step is not capturable (a host read, an
allocation the pool cannot serve).
"""
import argparse
import sys
import tempfile
import time

import numpy as np


def trainer_on_gpu(posterior, batch, iw, out, seed=0):
    from gvae.training import TrainConfig, Trainer
    rng = np.random.default_rng(seed)
    x = (rng.random((batch * 4, 784)) < 0.13).astype(np.float32)  # MNIST's share of pixels on
    y = np.zeros(len(x), np.int64)
    data = {"train": (x, y), "valid": (x[:batch], y[:batch]), "test": (x[:batch], y[:batch])}
    cfg = TrainConfig(posterior=posterior, latent=16, hidden=(500, 500), activation="elu", likelihood="bernoulli",
                      batch_size=batch, lr=1e-3, kl="analytic", samples=1, iw_samples=iw, seed=seed, dtype="float32")
    trainer = Trainer(cfg, data, out, progress=False, quiet=True, device="cuda", overwrite=True)
    from gvae.kernels import to_device
    return trainer, [to_device(x[i * batch:(i + 1) * batch], "cuda") for i in range(4)]


def counts(args):
    import torch
    from torch.profiler import ProfilerActivity, profile
    steps = 10
    for posterior in args.posterior:
        with tempfile.TemporaryDirectory() as out:
            trainer, xs = trainer_on_gpu(posterior, args.batch, args.iw, out)
            for i in range(5):
                trainer.step(xs[i % 4], 1.0)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for i in range(steps):
                    trainer.step(xs[i % 4], 1.0)
                torch.cuda.synchronize()
        tally = {}
        for e in prof.events():
            if e.device_type != torch.autograd.DeviceType.CUDA:
                continue
            kind = ("copy " + e.name.split("(")[0].replace("Memcpy", "").strip() if e.name.startswith("Memcpy")
                    else "memset" if e.name.startswith("Memset") else "kernel")
            tally[kind] = tally.get(kind, 0) + 1
        shown = ", ".join(f"{k}: {v / steps:g}" for k, v in sorted(tally.items())) or "nothing seen by CUPTI"
        print(f"counts per step, {posterior}, batch {args.batch}, iw {args.iw}: {shown}", flush=True)
        names = {}
        for e in prof.events():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                names[e.name[:70]] = names.get(e.name[:70], 0) + 1
        for name, n in sorted(names.items(), key=lambda kv: -kv[1])[:40]:
            print(f"    {n / steps:6g}  {name}")


def profile(args):
    import cProfile
    import pstats
    for posterior in args.posterior:
        with tempfile.TemporaryDirectory() as out:
            trainer, xs = trainer_on_gpu(posterior, args.batch, args.iw, out)
            for i in range(5):
                trainer.step(xs[i % 4], 1.0)
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            for i in range(300):
                trainer.step(xs[i % 4], 1.0)
            prof.disable()
            print(f"profile, {posterior}, batch {args.batch}, iw {args.iw}: "
                  f"{(time.perf_counter() - t0) / 300 * 1e3:.3f} ms a step under cProfile", flush=True)
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)


def graph(args):
    import cupy
    from gvae.kernels import to_host
    for posterior in args.posterior:
        with tempfile.TemporaryDirectory() as out:
            trainer, xs = trainer_on_gpu(posterior, args.batch, args.iw, out)
            stream = cupy.cuda.Stream(non_blocking=True)
            with stream:
                step_args = trainer.task.step_args((xs[0],), trainer.rng, 1.0)
                params = trainer.state.params.views

                def call():
                    (loss, aux), _ = trainer.step_fn(params, trainer.model, *step_args)
                    return loss
                for _ in range(3):  # the pool now holds every block one call asks for
                    loss = call()
                stream.synchronize()
                eager_loss, eager_grad = float(to_host(loss)), to_host(trainer.grad_flat).copy()
                try:
                    stream.begin_capture()
                    try:
                        captured = call()
                    finally:
                        g = stream.end_capture()
                except Exception as exc:  # noqa: BLE001 - the reason is the result
                    print(f"graph, {posterior}: capture refused: {type(exc).__name__}: {exc}", flush=True)
                    continue
                trainer.grad_flat[...] = 0
                g.launch(stream)
                stream.synchronize()
                same_loss = float(to_host(captured)) == eager_loss
                same_grad = np.array_equal(to_host(trainer.grad_flat), eager_grad)
                print(f"graph, {posterior}: replay vs eager: loss {'identical' if same_loss else 'DIFFERENT'} "
                      f"({float(to_host(captured))!r} vs {eager_loss!r}), gradient "
                      f"{'identical' if same_grad else 'DIFFERENT'}", flush=True)
                timings = {}
                for label, fn in (("eager", call), ("graph", lambda: g.launch(stream))):
                    fn()
                    stream.synchronize()
                    t0, n = time.perf_counter(), 200
                    for _ in range(n):
                        fn()
                    stream.synchronize()
                    timings[label] = (time.perf_counter() - t0) / n
                print(f"graph, {posterior}: value_and_grad eager {timings['eager'] * 1e3:.3f} ms, "
                      f"graph replay {timings['graph'] * 1e3:.3f} ms "
                      f"({timings['eager'] / timings['graph']:.1f}x)", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["counts", "profile", "graph"])
    p.add_argument("--posterior", nargs="+", default=["diagonal", "extgrid"])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--iw", type=int, default=1)
    args = p.parse_args(argv)
    {"counts": counts, "profile": profile, "graph": graph}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
