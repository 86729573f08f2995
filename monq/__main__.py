"""``python -m monq`` runs the ``monq`` command."""

import sys

from monq.cli import main

sys.exit(main())
