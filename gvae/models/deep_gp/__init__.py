"""Sparse Gaussian processes, the Bayesian GP-LVM and a two-layer deep GP on gvae's operations
(:mod:`.model`): a model of its own, trained by examples/deep_gp_mnist.py (no task of gvae train)."""
