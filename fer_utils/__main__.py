"""``python -m fer_utils``: the command-line interface."""

import sys

from fer_utils.cli import main

sys.exit(main())
