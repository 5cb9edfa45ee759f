"""The ``asteps`` command: ``main`` is the console script's entry point.

One module per command family; importing them registers their commands.
"""

from . import (  # noqa: F401  (registers the commands)
    demo,
    rerun,
    single,
    steps,
    steps_unmark,
    swf,
    swf_domain,
    swf_worker,
)
from .app import main

__all__ = ["main"]
