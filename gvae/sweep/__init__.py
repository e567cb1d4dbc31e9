"""Sweeps: a grid of training configurations x seeds, described by a TOML file (docs/howto/sweeps.md), each run
an ordinary run folder, run on Dask distributed and aggregated into a table.

:mod:`~gvae.sweep.spec` reads and checks the spec, :mod:`~gvae.sweep.state` tells how far each run
folder has come, :mod:`~gvae.sweep.execute` brings the runs up to date on a Dask cluster (each run a
``gvae train`` then ``gvae eval`` in one process of its own, :mod:`gvae.sweep_child`, whose log lines
:mod:`~gvae.sweep.runlog` writes and reads), :mod:`~gvae.sweep.table`
aggregates the results over seeds, and :mod:`~gvae.sweep.commands` adds ``gvae sweep`` and
``gvae table`` to the command line.

This package imports only the standard library when it is imported (its parts load on use), so that
``python -m gvae.sweep_child`` can still set thread counts before NumPy loads."""
