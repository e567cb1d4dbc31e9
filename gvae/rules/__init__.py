"""The maths of the banded-precision Gaussian and of its band operators, written once for every array type
gvae serves: its own tape (NumPy/CuPy arrays through :mod:`gvae.kernels`), PyTorch tensors and JAX arrays.

A rule takes the operations it is written in from its caller, as a namespace object that the caller builds
once, when it is imported: the band kernels (:mod:`.band`), the Gaussian's operators (:mod:`.gaussian`),
an array library's dtypes and shape broadcast (:mod:`.checks`). So this package imports neither torch nor
jax, and nothing of gvae above :mod:`gvae.kernels`.
"""
