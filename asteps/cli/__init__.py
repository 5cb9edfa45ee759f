"""The ``asteps`` command: ``main`` is the console script's entry point.

One module per command family; importing them registers their commands.
"""

from . import demo, rerun, single, steps, swf, swf_domain, swf_worker  # noqa: F401  (registers the commands)
from .app import main

__all__ = ["main"]
