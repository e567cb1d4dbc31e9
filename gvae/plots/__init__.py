"""Pictures: drawing only. What a picture shows of a model is computed below, by
:mod:`gvae.evaluation.pictures` (NumPy arrays on the host); these modules lay them out and write PNGs.

=========================  ======================================================================
:mod:`.canvas`             the Agg figure, image axes at an exact zoom, shared axis helpers, the PNG
                           writer; whether matplotlib (``gvae[plot]``) is there (``available``)
:mod:`.titles`             titles: what a picture shows, then the run, broken between phrases
:mod:`.curves`             ``curves.png`` of a run (``plot_curves``) and of a sweep
                           (``plot_sweep_curves``)
:mod:`.images`             ``reconstructions.png``, ``decoder_means.png`` (``plot_image_grid``, as
                           ``gvae sample`` writes it), ``manifold.png``
:mod:`.posterior`          ``cholesky_diagonals.png`` and ``correlation.png`` of structured
                           posteriors
:mod:`.analysis`           ``gaps.png``, ``surgery.png`` and ``unit_activity.png`` of ``gvae analyze``
:mod:`.run`                every picture of a run (``plot_run``, ``gvae plot``)
=========================  ======================================================================
"""
