import sys

from e2e_drive.cli import main

sys.exit(main())
