"""``python -m pyro_sus`` is the ``pyro-sus`` command."""

from .cli import main

raise SystemExit(main())
