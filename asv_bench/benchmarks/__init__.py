"""asv benchmarks for gvae: the training step and the Numba kernels it runs on.

Every class builds its data in ``setup`` and calls each kernel once there, so Numba compilation is
never timed. Shapes follow the 784-500-500-16 VAE trained with batch 100.
"""
