"""The ``gvae`` command: sets the process up before NumPy starts its BLAS's thread pool
(:mod:`gvae.process`), then runs the command (:mod:`gvae.commands`).

This module imports only the standard library and :mod:`gvae.process` at its top, so ``--threads N`` can
still set the thread counts that OpenBLAS, MKL and OpenMP read when they load. The commands' parser is
:class:`gvae.io.arguments.ArgumentParser`, also the parser of the scripts in ``examples/``."""
import sys

from .process import load_uninterrupted, prepare


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    loaded = {}

    def load():
        prepare(argv)
        from .commands import run
        loaded["run"] = run
    # A Ctrl-C while NumPy loads (the first second of a command) is taken after the imports: a clean stop.
    if load_uninterrupted(load):
        print("gvae: interrupted", file=sys.stderr)
        return 130
    return loaded["run"](argv)


if __name__ == "__main__":
    sys.exit(main())
