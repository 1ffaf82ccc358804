"""``python -m neurolake ...``: the command line without the console script (usable when it is broken)."""

import sys

from neurolake.cli import main

sys.exit(main())
