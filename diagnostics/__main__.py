"""``python -m diagnostics``: the same as the ``maildiag`` command."""

import sys

from diagnostics.cli import main

sys.exit(main())
