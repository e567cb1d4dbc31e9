"""Milliseconds per SVI step of every NumPyro and Pyro guide on the stochastic-volatility model against the
path's length T, with no final ELBO: the speed half of bench_guides.py alone, short enough to run quietly
(bench_guides.py fits each guide to convergence first, which takes an hour). The dense guides run up to
--dense-max-T (their step is O(T^3)).

    taskset -c 0 python benchmarks/bench_guide_steps.py --T 1000 2000 5000 10000
"""
import os
import sys

from gvae.io.arguments import ArgumentParser

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))  # the model fitted
from bench_guides import set_threads  # noqa: E402  (beside this script)

# (library, guide, timed steps, dense: only up to --dense-max-T)
PLAN = [("numpyro", "banded", 300, False), ("numpyro", "diagonal", 300, False), ("numpyro", "lowrank10", 200, False),
        ("numpyro", "lowrank50", 200, False), ("numpyro", "mvn", 15, True), ("pyro", "banded", 60, False),
        ("pyro", "diagonal", 60, False), ("pyro", "autogaussian", 3, True)]


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--T", type=int, nargs="+", default=[1000, 2000, 5000, 10000], help="path lengths")
    p.add_argument("--dense-max-T", type=int, default=2000, help="the largest T of the O(T^3) guides")
    p.add_argument("--threads", type=int, default=1, help="threads of gvae's kernels, XLA and PyTorch")
    args = p.parse_args(argv)
    if min(args.T) < 2 or args.threads < 1:
        p.error("--T must be >= 2 and --threads >= 1")
    set_threads(args.threads)
    from guide_fitting import fit
    from stochastic_volatility_guides import BANDED, model_of, simulate
    print(f"{'T':>6} {'library':8} {'guide':13} {'ms/step':>10}  (median of the timed steps after the warm-up)")
    for T in args.T:
        y, _ = simulate(T)
        for library, name, steps, dense in PLAN:
            if dense and T > args.dense_max_T:
                continue
            ms = fit(library, name, model_of, BANDED, y, steps, 0.01, elbo_particles=0)[3]
            print(f"{T:6d} {library:8} {name:13} {ms:10.3f}  ({steps} steps)", flush=True)


if __name__ == "__main__":
    main()
