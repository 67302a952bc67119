"""``python -m edgekd``: the command line (see :mod:`edgekd.cli`)."""

import sys

from edgekd.cli import main

sys.exit(main())
