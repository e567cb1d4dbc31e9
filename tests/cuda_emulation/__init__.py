"""A host emulation of CUDA for the tests: cuda_host.h, emulator.py (build and launch), fake_cupy.py."""
