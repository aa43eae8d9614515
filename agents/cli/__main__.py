"""``python -m agents.cli``: the ``recal-gym`` command line."""

from __future__ import annotations

import sys

from agents.cli.main import main

sys.exit(main())
