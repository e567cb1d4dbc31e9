"""The ``gvae`` command: sets the process up before NumPy starts its BLAS's thread pool
(:mod:`gvae.process`), then runs the command (:mod:`gvae.commands`).

This module imports only the standard library and :mod:`gvae.process` at its top, so ``--threads N`` can
still set the thread counts that OpenBLAS, MKL and OpenMP read when they load."""
import sys

from .process import prepare


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    prepare(argv)
    from .commands import run
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
