"""gvae's CUDA runtime: the floor under the CUDA twins (``NAME_cuda.py``) of :mod:`gvae.kernels`, as
:mod:`gvae.kernels.cpu` is under the Numba kernels. CuPy is imported only inside the functions that need
it.

- :mod:`build`: the ``.cu`` sources (with :file:`common.cuh`, the device helpers they share) built into
  CuPy RawModules, and the launch configuration.
- :mod:`cublas`: gvae's own cuBLAS handle, whose GEMMs a CUDA graph can record.
- :mod:`stream`: CuPy's handle on a stream another library made (PyTorch's, XLA's).
- :mod:`capture`: a stretch of kernel launches recorded as a CUDA graph and replayed
  (:mod:`gvae.kernels.capture`).
"""
