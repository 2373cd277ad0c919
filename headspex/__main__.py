"""``python -m headspex`` = the ``headspex`` command."""

import sys

from .cli import main

sys.exit(main())
