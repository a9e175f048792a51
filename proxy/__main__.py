"""``python -m proxy`` == ``sipmask``."""

from .cli import main

raise SystemExit(main())
