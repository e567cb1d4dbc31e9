from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
# gvae sweep runs on Dask distributed, the pictures need matplotlib, gvae.torch PyTorch and gvae.jax JAX:
# extras of their own, and in "test" so that every test runs in CI.
DASK = "dask[distributed]>=2023.1"
PLOT = "matplotlib>=3.7"
# gvae.torch (the kernels as PyTorch operators) is pinned to the PyTorch it is tested with: it registers
# operators through torch.library, whose Python API still changes between releases.
TORCH = "torch==2.13.0"
# gvae.jax is pinned likewise: it relies on jax.custom_vjp over jax.pure_callback (its vmap_method and the
# arrays it hands the callback changed between releases), and jaxlib must match jax exactly.
JAX = ["jax==0.10.2", "jaxlib==0.10.2"]
# gvae.numpyro and gvae.pyro (AutoBandedNormal) extend the libraries' AutoContinuous through names outside
# their public API (the ravelled latent's init values and unpacking), which a release may change: pinned.
NUMPYRO = "numpyro==0.22.0"
PYRO = "pyro-ppl==1.9.2"
OPTAX = "optax==0.2.8"  # examples/jax_banded_vae.py (tested) and the JAX peer of the benchmarks
# The linear SVM that measures a VCCA's shared code (task vcca's test summary), as the VCCA paper does.
EVAL = "scikit-learn>=1.3"
# The BLAS's thread count found portably (macOS, Windows; OpenBLAS, MKL, BLIS): gvae/kernels/cpu/blas.py.
BLAS = "threadpoolctl>=3.1"
# The API reference and the topic pages (docs/conf.py): Sphinx with Markdown through MyST.
DOCS = ["sphinx>=8.2", "myst-parser>=4"]
version = next(line.split('"')[1] for line in (here / "gvae" / "__init__.py").read_text().splitlines()
               if line.startswith("__version__"))

setup(
    name="gvae",
    version=version,
    description="Variational autoencoders with structured (banded-precision) Gaussian posteriors, "
                "on NumPy and Numba",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gvae", "gvae.*"]),
    package_data={"gvae.kernels": ["*.cu"], "gvae.kernels.band": ["*.cu", "*.cuh"], "gvae.kernels.cuda": ["*.cuh"]},
    python_requires=">=3.11",
    # Numba capped below its next minor release: the kernels use names from outside its public API
    # (gvae/kernels/cpu/numba_compat.py), which a release may move.
    install_requires=["numpy>=1.26", "scipy>=1.11", "numba>=0.59,<0.69", "tqdm>=4.60"],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6.80", DASK, PLOT, TORCH, *JAX, OPTAX, EVAL, BLAS, *DOCS,
                 NUMPYRO, PYRO, "asv>=0.6"],  # asv: tests/test_bench_history.py publishes the speed history
        "docs": DOCS,
        "dask": [DASK],
        "bench": ["asv>=0.6", TORCH, *JAX, OPTAX],  # the peers of benchmarks/bench_*.py
        "plot": [PLOT],
        "eval": [EVAL],
        "blas": [BLAS],
        "torch": [TORCH],
        "jax": JAX,
        "numpyro": [*JAX, NUMPYRO],
        "pyro": [TORCH, PYRO],
        "cuda12": ["cupy-cuda12x>=13"],
        "cuda13": ["cupy-cuda13x>=13"],
    },
    entry_points={"console_scripts": ["gvae=gvae.cli:main"]},
    license="MIT",
    license_files=["LICENSE"],  # the license's text, in the sdist and in the wheel's metadata
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
