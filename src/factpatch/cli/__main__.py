"""`python -m factpatch.cli`: the same as the `factpatch` command."""

import sys

from . import main

sys.exit(main())
