"""``python -m e2e_drive``: the ``e2e-drive`` console script."""

import sys

from e2e_drive.cli import main

sys.exit(main())
