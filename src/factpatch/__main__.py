"""`python -m factpatch ...`: the same command line as `factpatch ...`."""

import sys

from .cli import main

sys.exit(main())
