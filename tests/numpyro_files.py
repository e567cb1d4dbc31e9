"""The NumPyro guides' test files, which run in a fresh process of their own (tests/test_numpyro_isolated.py):
in an xdist worker that had run other tests first, XLA's compiler crashed with a segmentation fault under
them in three suite runs out of three, while they pass in a process of their own."""
NUMPYRO_FILES = ["test_numpyro_guide.py", "test_guide_arguments.py", "test_guides_examples.py"]
