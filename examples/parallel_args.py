"""The command-line settings the data-parallel examples share (torch_ddp_banded_vae.py and
jax_sharded_banded_vae.py): the model's, the optimiser's and the data's."""

POSTERIORS = ("diagonal", "chain", "extgrid")


def add_training_args(p):
    """Add --posterior, --epochs, --steps, --latent, --hidden, --batch-size, --lr, --seed, --dtype and
    --limit to the ArgumentParser ``p``."""
    p.add_argument("--posterior", choices=POSTERIORS, default="extgrid")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")


def positive(p, args, *names):
    """Refuse (through ``p.error``) any of the integer settings ``names`` (attribute names) below 1."""
    def below(v):
        return min(v) < 1 if isinstance(v, list) else v < 1
    low = [n for n in names if getattr(args, n) is not None and below(getattr(args, n))]
    if low:
        p.error(", ".join("--" + n.replace("_", "-") for n in low) + " must be >= 1")
