"""The ``recal-gym`` command line: ``main`` (``agents.cli.main``) and its subcommands.

Subcommand modules stay import-light (no torch at import time): ``agents.cli.train``
(``recal-gym train``) and ``agents.cli.pool`` (``recal-gym pool``).
"""

from __future__ import annotations

from agents.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
