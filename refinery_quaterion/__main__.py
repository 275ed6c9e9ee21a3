"""``python -m refinery_quaterion`` runs the command line."""

import sys

from refinery_quaterion.cli import main

sys.exit(main())
