"""``python -m gvae``: the ``gvae`` command (:func:`gvae.cli.main`), for environments without the console
script on the path."""
import sys

from .cli import main

sys.exit(main())
