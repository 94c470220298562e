"""``python -m geoalign.cli``: the ``geoalign`` command."""
import sys

from . import main

sys.exit(main())
