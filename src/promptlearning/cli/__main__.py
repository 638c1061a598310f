"""``python -m promptlearning.cli``."""

import sys

from promptlearning.cli import main

sys.exit(main())
