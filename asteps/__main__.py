"""``python -m asteps`` is the ``asteps`` command."""

from .cli import main

main()
