"""``python -m loadtest``: see :mod:`loadtest.cli`."""

import sys

from .cli import main

sys.exit(main())
