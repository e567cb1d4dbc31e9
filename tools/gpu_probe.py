"""What one gvae training step does on a CUDA GPU: the launches and copies it makes, and whether its
forward and backward pass replays from a CUDA graph (run by tools/gpu_check.sh; needs CuPy, a GPU and,
for the counts, PyTorch's profiler).

    python tools/gpu_probe.py counts [--posterior diagonal extgrid] [--batch 100] [--iw 1]
    python tools/gpu_probe.py profile [--posterior diagonal] [--batch 100]
    python tools/gpu_probe.py graph  [--posterior diagonal] [--batch 100]
    python tools/gpu_probe.py trainer [--posterior diagonal extgrid] [--batch 100] [--iw 1]
    python tools/gpu_probe.py torchhead [--batch 100]

``counts``: :meth:`gvae.training.Trainer.step` on ``device="cuda"`` under ``torch.profiler`` (CUPTI sees
every kernel of the process, CuPy's and cuBLAS's included), after warm-up steps; per step, the kernels
launched, the copies between host and device by direction, and the memsets.

``profile``: 300 steps under ``cProfile``, the functions with the most time of their own: where the
host spends a step that the GPU waits for.

``graph``: the step's value_and_grad (``Trainer.captured.step_fn``) on fixed inputs, captured on a CuPy stream
(``Stream.begin_capture``/``end_capture``) once the memory pool holds every block it needs, replayed, and
compared bit for bit with the eager call on the same inputs; then the whole device step (noise, value and
gradient, Adam) the same way, and the replayed step timed against the eager one and PyTorch CUDA eager
(see :func:`graph`). ``trainer``: ``Trainer.step`` replaying its graph against a taped trainer, bit for
bit (see :func:`trainer`). ``torchhead``: where examples/torch_banded_vae.py's extended-grid step spends
the time its diagonal one does not (see :func:`torchhead`). A capture that CuPy or the step refuses is reported with its error: it says what in
the step is not capturable (a host read, an allocation the pool cannot serve).
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


def _capture(stream, call):
    """(graph, result) of ``call()`` recorded on ``stream``, or (None, the reason CuPy or the step refused)."""
    try:
        stream.begin_capture()
        try:
            result = call()
        finally:
            g = stream.end_capture()
    except Exception as exc:  # noqa: BLE001 - the reason is the result
        return None, f"{type(exc).__name__}: {exc}"
    return g, result


def _timed(fn, sync, n=200):
    for _ in range(3):
        fn()
    sync()
    best = float("inf")
    for _ in range(5):  # the best of five blocks: the host's noise only ever adds
        t0 = time.perf_counter()
        for _ in range(n // 5):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / (n // 5))
    return best


def graph(args):
    """Part 1: value_and_grad on fixed inputs, captured and replayed, bit for bit against the eager call.
    Part 2: the step's whole device work (the noise from the run's CuPy generator, whose state lives on
    the GPU, value_and_grad and the fused Adam pass) captured once and replayed twice from the same
    parameters and generator state as two eager steps, bit for bit; then per step: ``Trainer.step``
    (eager, with its two host reads), the eager device work, the graph's replay (batch copied into the
    captured input, replay, the loss read), and PyTorch CUDA eager on the same model (fused Adam, the
    loss read), all in this process."""
    import cupy
    from gvae import kernels
    from gvae.kernels import generator, to_host
    sync = cupy.cuda.Device().synchronize
    for posterior in args.posterior:
        with tempfile.TemporaryDirectory() as out:
            trainer, xs = trainer_on_gpu(posterior, args.batch, args.iw, out)
            stream = cupy.cuda.Stream(non_blocking=True)
            with stream:
                step_args = trainer.task.step_args((xs[0],), trainer.rng, 1.0)
                params = trainer.state.params.views

                def call():
                    (_, (loss, aux)), _ = trainer.captured.step_fn(params, trainer.model, *step_args)
                    return loss
                for _ in range(3):  # the pool now holds every block one call asks for
                    loss = call()
                stream.synchronize()
                eager_loss, eager_grad = float(to_host(loss)), to_host(trainer.grad_flat).copy()
                g, captured = _capture(stream, call)
                if g is None:
                    print(f"graph, {posterior}: value_and_grad capture refused: {captured}", flush=True)
                    continue
                trainer.grad_flat[...] = 0
                g.launch(stream)
                stream.synchronize()
                same_loss = float(to_host(captured)) == eager_loss
                same_grad = np.array_equal(to_host(trainer.grad_flat), eager_grad)
                print(f"graph, {posterior}: value_and_grad replay vs eager: loss "
                      f"{'identical' if same_loss else 'DIFFERENT'} ({float(to_host(captured))!r} vs {eager_loss!r}), "
                      f"gradient {'identical' if same_grad else 'DIFFERENT'}", flush=True)

                # Part 2: the whole device step.
                opt, cfg = trainer.state.optimizer, trainer.config
                x_in = xs[0].copy()  # the captured input: a batch is copied into it before a replay

                def device_step(rng):
                    a = trainer.task.step_args((x_in,), rng, 1.0)
                    (_, (loss, aux)), _ = trainer.captured.step_fn(params, trainer.model, *a)
                    # Adam's step count and clip scale are the graph's constants (step 10, no clipping).
                    kernels.adam_update(opt.flat, trainer.grad_flat, opt.m, opt.v, lr=opt.lr, beta1=opt.beta1,
                                        beta2=opt.beta2, eps=opt.eps, step=10, scale=1.0)
                    return loss
                warm = generator("cuda", (cfg.seed, 99))
                for _ in range(3):
                    device_step(warm)
                stream.synchronize()
                start = [b.copy() for b in (opt.flat, opt.m, opt.v)]
                rng = generator("cuda", (cfg.seed, 7))
                eager = [float(to_host(device_step(rng))) for _ in range(2)]
                eager_flat = to_host(opt.flat).copy()
                for b, s0 in zip((opt.flat, opt.m, opt.v), start):
                    b[...] = s0
                rng = generator("cuda", (cfg.seed, 7))
                stream.synchronize()
                g2, captured = _capture(stream, lambda: device_step(rng))
                if g2 is None:
                    print(f"graph, {posterior}: whole-step capture refused: {captured}", flush=True)
                    continue
                replayed = []
                for _ in range(2):
                    g2.launch(stream)
                    stream.synchronize()
                    replayed.append(float(to_host(captured)))
                same = replayed == eager and np.array_equal(to_host(opt.flat), eager_flat)
                print(f"graph, {posterior}: whole step (noise, value_and_grad, Adam) replayed twice vs two eager "
                      f"steps: {'identical' if same else 'DIFFERENT'} (losses {replayed} vs {eager}; "
                      f"fresh noise each replay: {replayed[0] != replayed[1]})", flush=True)

                i = [0]

                def replay_step():
                    i[0] += 1
                    x_in[...] = xs[i[0] % 4]
                    g2.launch(stream)
                    float(to_host(captured))

                def trainer_step():
                    i[0] += 1
                    trainer.step(xs[i[0] % 4], 1.0)
                timings = {"Trainer.step (eager)": _timed(trainer_step, stream.synchronize),
                           "device work, eager": _timed(lambda: float(to_host(device_step(rng))), stream.synchronize),
                           "device work, graph replay": _timed(replay_step, stream.synchronize)}
            timings.update(_torch_step(args, xs, sync))
            ref = timings.get("torch eager")
            for label, sec in timings.items():
                ratio = f"  {sec / ref:.2f}x torch eager" if ref else ""
                print(f"graph, {posterior}, batch {args.batch}, iw {args.iw}: {label:<26} {sec * 1e3:7.3f} ms{ratio}",
                      flush=True)


def _torch_step(args, xs, sync):
    """{"torch eager": seconds a step} of benchmarks/step_peers.py's model on the same batches (PyTorch CUDA
    eager, fused Adam, the loss read each step), or {} without PyTorch."""
    try:
        import torch
    except ImportError:
        return {}
    import os
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
    from step_peers import init_weights, torch_vae
    from gvae.kernels import to_host
    model = torch_vae(16, args.iw, init_weights(500, 16, np.random.default_rng(0)), "cuda")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    tx = [torch.from_numpy(to_host(x)).cuda() for x in xs]
    gen = torch.Generator(device="cuda").manual_seed(0)
    i = [0]

    def step():
        i[0] += 1
        eps = torch.randn((args.iw, args.batch, 16), generator=gen, device="cuda")
        opt.zero_grad(set_to_none=True)
        loss = model.loss(tx[i[0] % 4], eps)
        loss.backward()
        opt.step()
        float(loss)
    return {"torch eager": _timed(step, torch.cuda.synchronize)}


def trainer(args):
    """``Trainer.step`` as gvae train runs it on CUDA (its forward and backward recorded as a graph,
    gvae/training/captured_step.py) against the same trainer on the tape (its capture switched off), from
    the same parameters, on the same batches: parameters, Adam's moments and the reported means bit for
    bit after steps that cover the first (taped) step, the recording, the check against the tape,
    replays, and a new epoch's generator."""
    from gvae.kernels import to_host
    for posterior in args.posterior:
        with tempfile.TemporaryDirectory() as out_a, tempfile.TemporaryDirectory() as out_b:
            graphed, xs = trainer_on_gpu(posterior, args.batch, args.iw, out_a)
            eager, _ = trainer_on_gpu(posterior, args.batch, args.iw, out_b)
            eager.captured.capture = None
            reports = {"graph": [], "eager": []}
            for i in range(12):
                if i == 6:  # a new epoch: a new generator for both
                    graphed.rng, eager.rng = graphed.epoch_generator(1), eager.epoch_generator(1)
                for label, t in (("graph", graphed), ("eager", eager)):
                    reports[label].append(t.step(xs[i % 4], 1.0))
            same = reports["graph"] == reports["eager"] and all(
                np.array_equal(to_host(a), to_host(b)) for a, b in
                ((graphed.state.params.flat, eager.state.params.flat), (graphed.state.optimizer.m, eager.state.optimizer.m),
                 (graphed.state.optimizer.v, eager.state.optimizer.v)))
            c = graphed.captured
            print(f"trainer, {posterior}, batch {args.batch}, iw {args.iw}: 12 steps, graph vs eager: "
                  f"{'identical' if same else 'DIFFERENT'} (recorded: {c.record is not None}, replayed: {c.replays}, "
                  f"refused: {c.refused}; last bounds {reports['graph'][-1]} vs {reports['eager'][-1]})", flush=True)


def torchhead(args):
    """examples/torch_banded_vae.py's step on CUDA (gvae.torch's band_head): the diagonal and extended-grid
    models' steps timed, the extended grid's also with the head unchecked (``check=False``: no read of the
    device's flags), and host-side and device-side accounts of 20 steps under ``torch.profiler``: the
    operators with the most host time of their own, and the device's kernels by time."""
    import os
    import torch
    from torch.profiler import ProfilerActivity, profile
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
    import torch_banded_vae as example
    rng = np.random.default_rng(0)
    xs = [torch.from_numpy((rng.random((args.batch, 784)) < 0.13).astype(np.float32)).cuda() for _ in range(4)]
    sync = torch.cuda.synchronize
    models = {}
    for posterior in ("diagonal", "extgrid"):
        torch.manual_seed(0)
        model = example.VAE(posterior, 16, (500, 500)).cuda()
        model.prior = torch.distributions.Normal(torch.tensor(0.0, device="cuda"), torch.tensor(1.0, device="cuda"))
        models[posterior] = (model, torch.optim.Adam(model.parameters(), lr=1e-3, fused=True))
    i = [0]

    def stepper(posterior):
        model, opt = models[posterior]

        def step():
            i[0] += 1
            float(example.train_step(model, opt, xs[i[0] % 4]))
        return step
    times = {p: _timed(stepper(p), sync) for p in models}
    head = example.band_head
    example.band_head = lambda *a, **k: head(*a, **{**k, "check": False})
    times["extgrid, head unchecked"] = _timed(stepper("extgrid"), sync)
    example.band_head = head
    for label, sec in times.items():
        print(f"torchhead, batch {args.batch}: {label:<24} {sec * 1e3:7.3f} ms  "
              f"{sec / times['diagonal']:.2f}x diagonal", flush=True)
    for posterior in models:
        step = stepper(posterior)
        for _ in range(3):
            step()
        sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                step()
            sync()
        print(f"torchhead, {posterior}: 20 steps, operators by host time of their own", flush=True)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22, max_name_column_width=60))
        print(f"torchhead, {posterior}: 20 steps, device kernels by time", flush=True)
        print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=14, max_name_column_width=60))
    import cProfile
    import pstats
    step = stepper("extgrid")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(300):
        step()
    sync()
    prof.disable()
    print("torchhead, extgrid: 300 steps under cProfile, the functions with the most time of their own", flush=True)
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(45)
    pstats.Stats(prof, stream=sys.stdout).sort_stats("cumtime").print_stats(45)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["counts", "profile", "graph", "trainer", "torchhead"])
    p.add_argument("--posterior", nargs="+", default=["diagonal", "extgrid"])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--iw", type=int, default=1)
    args = p.parse_args(argv)
    {"counts": counts, "profile": profile, "graph": graph, "trainer": trainer, "torchhead": torchhead}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
