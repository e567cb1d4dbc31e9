"""Peak memory of SVI with every NumPyro and Pyro guide on the stochastic-volatility model of
examples/stochastic_volatility_guides.py against the path's length T, and each guide's parameter count.

Each (T, library, guide) runs in a fresh child process (this script with a hidden flag), which
1. sets the threads (--threads) and imports JAX, NumPyro, PyTorch, Pyro and gvae;
2. warms the library up: the same guide fitted for 3 steps to the model at T = 64 (the XLA compiler's or
   PyTorch's first use, gvae's kernels compiled), so that none of this is charged to the guide;
3. simulates the returns at T and makes the model and the guide (no parameters yet);
4. reads the base: the peak resident set so far, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on
   Linux);
5. runs SVI (Adam, step size 0.01, 0.001 for the dense guides): NumPyro's ``svi.init`` and ``svi.update``
   jitted and compiled ahead of time (the set-up), then the compiled update; Pyro's eager ``svi.step``
   (the first one makes the parameters); reading the peak after the set-up, after the first step and
   after --steps steps (--dense-steps for AutoMultivariateNormal and AutoGaussian, whose step is O(T^3)).
The table shows the base in MiB and the growth of the peak over it in MiB at each of the three: what the
guide's parameters, Adam's moments, the step's temporaries and (NumPyro) the compilation added to the
process. A peak is a high-water mark: memory freed and reused does not add to it again. ``params`` is the
number of the guide's parameters, every entry of every array (the model has none). The dense guides run up
to --dense-max-T.

    taskset -c 0 python benchmarks/bench_guide_memory.py --threads 1 --T 1000 2000 5000 10000
"""
import argparse
import json
import os
import resource
import subprocess
import sys

from gvae.io.arguments import ArgumentParser

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))  # the model fitted
from guide_fitting import set_threads  # noqa: E402

# (library, guide, dense: only up to --dense-max-T)
PLAN = [("numpyro", "banded", False), ("numpyro", "diagonal", False), ("numpyro", "lowrank10", False),
        ("numpyro", "lowrank50", False), ("numpyro", "mvn", True), ("pyro", "banded", False),
        ("pyro", "diagonal", False), ("pyro", "autogaussian", True)]
WARM_T, WARM_STEPS = 64, 3


def peak_mib():
    """The process's peak resident set so far, in MiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_numpyro(model, guide, y, steps, lr, mark):
    """svi.init and the update compiled ahead of time, then ``steps`` updates; ``mark()`` called after the
    compilation and after the first step. The guide's parameter count."""
    import jax
    import numpyro
    from numpyro.infer import SVI, Trace_ELBO

    svi = SVI(model, guide, numpyro.optim.Adam(lr), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), y)
    update = jax.jit(svi.update).lower(state, y).compile()
    mark()
    for step in range(steps):
        state, loss = update(state, y)
        loss.block_until_ready()
        if step == 0:
            mark()
    return sum(int(v.size) for v in jax.tree_util.tree_leaves(svi.get_params(state)))


def run_pyro(model, guide, y, steps, lr, mark):
    """``steps`` eager SVI steps (the first makes the parameters); ``mark()`` called before the first
    and after it. The guide's parameter count."""
    import pyro
    import torch
    from pyro.infer import SVI, Trace_ELBO

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    y = torch.as_tensor(y)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO())
    mark()
    for step in range(steps):
        svi.step(y)
        if step == 0:
            mark()
    return sum(p.numel() for p in guide.parameters())


def child(spec, T, steps, lr, threads):
    """One measurement in this (fresh) process, printed as one JSON line."""
    set_threads(threads)
    from guide_fitting import numpyro_guide, pyro_guide
    from stochastic_volatility_guides import BANDED, model_of, simulate

    library, name = spec.split(":")
    make, run = (numpyro_guide, run_numpyro) if library == "numpyro" else (pyro_guide, run_pyro)
    model = model_of(library)
    run(model, make(name, model, BANDED), simulate(WARM_T)[0], WARM_STEPS, lr, lambda: None)  # the warm-up
    y, _ = simulate(T)
    model = model_of(library)
    guide = make(name, model, BANDED)
    base = peak_mib()
    marks = []
    params = run(model, guide, y, steps, lr, lambda: marks.append(peak_mib() - base))
    print(json.dumps({"base": base, "setup": marks[0], "first": marks[1], "all": peak_mib() - base,
                      "params": params}))


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--T", type=int, nargs="+", default=[1000, 2000, 5000, 10000], help="path lengths")
    p.add_argument("--dense-max-T", type=int, default=2000, help="the largest T of the O(T^3) guides")
    p.add_argument("--steps", type=int, default=100, help="SVI steps of each guide but the dense ones")
    p.add_argument("--dense-steps", type=int, default=10, help="SVI steps of AutoMultivariateNormal and AutoGaussian")
    p.add_argument("--guides", nargs="+", default=[f"{library}:{name}" for library, name, _ in PLAN],
                   choices=[f"{library}:{name}" for library, name, _ in PLAN], metavar="LIBRARY:GUIDE",
                   help="the guides measured, as library:guide (default: all, in this order)")
    p.add_argument("--threads", type=int, default=1, help="threads of gvae's kernels, XLA and PyTorch")
    p.add_argument("--child", help=argparse.SUPPRESS)  # LIBRARY:GUIDE: one measurement, in this process
    args = p.parse_args(argv)
    if min(args.T) < 2 or args.threads < 1 or args.steps < 1 or args.dense_steps < 1:
        p.error("--T must be >= 2, and --threads, --steps and --dense-steps >= 1")
    dense = {f"{library}:{name}" for library, name, d in PLAN if d}
    if args.child:
        steps, lr = (args.dense_steps, 0.001) if args.child in dense else (args.steps, 0.01)
        return child(args.child, args.T[0], steps, lr, args.threads)
    print(f"peak resident set of SVI, {args.threads} thread(s), a fresh process per row; MiB: the base before "
          f"SVI, and the peak's growth over it after the set-up (NumPyro: svi.init and the compilation), after "
          f"1 step and after all of them")
    print(f"{'T':>6} {'library':8} {'guide':13} {'steps':>5} {'params':>10} {'base':>7} {'set-up':>7} {'1 step':>7} "
          f"{'all':>7}")
    for T in args.T:
        for spec in args.guides:
            if spec in dense and T > args.dense_max_T:
                continue
            library, name = spec.split(":")
            steps = args.dense_steps if spec in dense else args.steps
            cmd = [sys.executable, os.path.abspath(__file__), "--child", spec, "--T", str(T), "--threads",
                   str(args.threads), "--steps", str(args.steps), "--dense-steps", str(args.dense_steps)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
                print(f"{T:6d} {library:8} {name:13} failed: {why}", flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{T:6d} {library:8} {name:13} {steps:5d} {r['params']:10,d} {r['base']:7.1f} {r['setup']:7.1f} "
                  f"{r['first']:7.1f} {r['all']:7.1f}", flush=True)


if __name__ == "__main__":
    main()
