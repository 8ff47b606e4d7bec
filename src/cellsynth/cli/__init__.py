"""The ``cellsynth`` command line. Thin by design: it parses, calls the Python API, prints.

Every error a user can cause ends in one readable line (what, where, how to fix) and exit code 2, never a
traceback, and a warning is one line too; ``CELLSYNTH_DEBUG=1`` shows the traceback and where a warning came
from.

One module per group of commands: :mod:`~cellsynth.cli.data` (``data`` and ``data import``),
:mod:`~cellsynth.cli.models` (``models``, ``fit``, ``generate``), :mod:`~cellsynth.cli.scoring` (``evaluate``,
``bench``), :mod:`~cellsynth.cli.bench_users` (``bench-users``), :mod:`~cellsynth.cli.demo`; :mod:`~cellsynth.cli.errors` turns failures into one line, and
:mod:`~cellsynth.cli._common` holds the apps, consoles, options and helpers they share. Nothing in cellsynth
imports this package.
"""

from __future__ import annotations

import os
import sys
import warnings

# The command modules register their commands when imported, in the order `cellsynth --help` lists them.
# isort: off
from cellsynth.cli import data  # noqa: F401
from cellsynth.cli import models  # noqa: F401
from cellsynth.cli import scoring  # noqa: F401
from cellsynth.cli import bench_users  # noqa: F401
from cellsynth.cli import demo  # noqa: F401

# isort: on
from cellsynth.cli._common import app
from cellsynth.cli.errors import format_warning, print_error
from cellsynth.errors import CellsynthError

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``cellsynth`` script."""
    if not os.environ.get("CELLSYNTH_DEBUG"):
        warnings.formatwarning = format_warning
    try:
        app()
    except CellsynthError as err:
        if os.environ.get("CELLSYNTH_DEBUG"):
            raise
        print_error(err)
        sys.exit(2)
