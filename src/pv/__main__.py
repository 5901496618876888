"""`python -m pv` runs the `pv` command."""

import sys

from pv.cli import main

sys.exit(main())
