"""The encoder's scales of a trained deep VIB (a run of ``gvae train --task classify``) on the test images:
how close sigma = softplus(rho - S) + floor comes to its floor, which Alemi et al.'s code does not have.
Where no sigma comes near it, the floor cannot move the run's test error.

    python examples/vib_scales.py RUN_DIR [RUN_DIR ...] [--params average|last|best]

``--params``: the last step's weight average (a run with ``--polyak``; what ``--test-params last`` tests
with), the last step's parameters, or those of the best validation epoch. The test images go through the
task's own reading of the data (2x - 1 with ``--input-range signed``). Prints per run the floor, the
smallest sigma, its quantiles and the share of sigmas below ten times the floor.
"""
import numpy as np

from gvae.io.arguments import ArgumentParser


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--params", choices=("average", "last", "best"), default="average")
    p.add_argument("--data", default=None, help="as for gvae train (default: MNIST from the cache)")
    return p.parse_args(argv)


def scales(run, which, data):
    """sigma (N, K) float64 of q(z|x) for the run's test images, and the family's floor."""
    import gvae.models  # noqa: F401  (registers the classify task)
    from gvae.model.params import FlatParams
    from gvae.training import checkpoint
    from gvae.training.runs import load_model
    from gvae.training.tasks import task_class

    model, params, config = load_model(run, "last" if which == "average" else which)
    if config.task != "classify":
        raise SystemExit(f"{run} is a run of --task {config.task}, not classify")
    if which == "average":
        arrays, _ = checkpoint.load(f"{run}/checkpoint.npz")
        if "average_params" not in arrays:
            raise SystemExit(f"{run} has no weight average (it was trained without --polyak): use --params last")
        # After the runs' 120,000 steps at decay 0.999 the average's zero-debiasing factor is 1 to float32.
        params = FlatParams(model.param_shapes(), model.dtype, arrays["average_params"].astype(model.dtype)).views
    x = task_class("classify")(config, model, "cpu").inputs(data)["test"][0]
    q, _ = model.infer(params, np.asarray(x, model.dtype))
    return np.asarray(q.sigma, np.float64), model.family.floor


def main(argv=None):
    args = parse_args(argv)
    from gvae.io.mnist import load_mnist
    data = load_mnist(args.data)
    for run in args.runs:
        try:
            sigma, floor = scales(run, args.params, data)
        except (ValueError, OSError) as e:  # no run there, a damaged checkpoint (RunFolderError is a ValueError)
            raise SystemExit(f"vib_scales.py: {e}") from None
        q = np.quantile(sigma, [1e-4, 1e-2, 0.5])
        print(f"{run} ({args.params}): floor {floor:g}; sigma min {sigma.min():.3g}, quantiles 0.01% {q[0]:.3g}, "
              f"1% {q[1]:.3g}, 50% {q[2]:.3g}; share below 10x the floor {np.mean(sigma < 10 * floor):.3g} "
              f"of {sigma.size} scales")


if __name__ == "__main__":
    main()
