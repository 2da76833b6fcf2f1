"""`python -m loopcoder.lsp.cli ...`: the `loopcoder` command (the daemon's autostart, the demo and the tests start it so)."""

import sys

from . import main

sys.exit(main())
