"""python -m simplejob: see simplejob.cli."""

import sys

from .cli import main

sys.exit(main())
