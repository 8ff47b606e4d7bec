"""How the ``cellsynth`` command line turns failures into one line on stderr and exit code 2.

- :class:`CommandGroup` wraps every command: I/O failures (``OSError``, ``EOFError``, ``zlib.error``) become a
  :class:`CellsynthError` naming the file; ``cli.main`` prints every ``CellsynthError`` with
  :func:`print_error` as ``error: ...``.
- Option callbacks check seeds and time steps before a command runs.
- YAML configs and ``--set`` values are parsed into :class:`ConfigError` on bad syntax.

Genuine bugs (any other exception) keep their traceback.
"""

from __future__ import annotations

import errno
import gzip
import os
import zlib
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from cellsynth.errors import CellsynthError, ConfigError
from cellsynth.seeds import check_seed

__all__ = [
    "CommandGroup",
    "err_console",
    "print_error",
    "seed_option",
    "step_option",
    "yaml_mapping",
    "yaml_value",
]

err_console = Console(stderr=True, soft_wrap=True)


def print_error(err: CellsynthError) -> None:
    """``error: <what, where, how to fix>`` on stderr, one line."""
    # A Text, not markup: paths and values may hold brackets ("traffic[red].csv", "[/x]") that rich
    # would interpret or choke on.
    err_console.print(Text.assemble(("error:", "bold red"), " ", str(err)), highlight=False)


class CommandGroup(TyperGroup):
    """The root command group: I/O failures inside a command become one-line errors.

    Click turns an ``EOFError`` (what a truncated ``.gz``/``.xz`` file raises) into a bare "Aborted."; an
    ``OSError`` (permission denied, disk full, a file that is not gzip) would end in a traceback. Both, and
    ``zlib.error``, are re-raised here as a :class:`CellsynthError` naming the file where it can be found.
    A broken pipe (``cellsynth ... | head``) keeps click's quiet exit.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OSError as err:
            if err.errno == errno.EPIPE:
                raise
            raise CellsynthError(io_message(err)) from err
        except (EOFError, zlib.error) as err:
            raise CellsynthError(io_message(err)) from err


def format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as the command line shows it: ``Category: message`` on one line, without the source line
    that Python's default format adds (it points into cellsynth, not at anything the user gave)."""
    return f"{category.__name__}: {message}\n"


def io_message(err: BaseException) -> str:
    """``<file>: <what went wrong>`` for an I/O failure, with the file taken from the error or its traceback."""
    path = getattr(err, "filename", None) or file_in_traceback(err.__traceback__)
    what = getattr(err, "strerror", None) or str(err) or type(err).__name__
    if isinstance(err, (EOFError, zlib.error, gzip.BadGzipFile)):
        what += " (the file is truncated or not what its name says: download or write it again)"
    where = f"{path}: " if path else ""
    other = getattr(err, "filename2", None)
    return f"{where}{what}" + (f" (with {other})" if other else "")


def file_in_traceback(tb) -> str | None:
    """The name of the innermost open file in the frames of ``tb`` (the one being read when it failed)."""
    found = None
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            try:  # any object can sit in a frame; one whose attributes misbehave is simply not a file
                for candidate in (value, getattr(value, "_fp", None), getattr(value, "fileobj", None)):
                    name = getattr(candidate, "name", None)
                    if isinstance(name, str) and hasattr(candidate, "read") and os.path.exists(name):
                        found = name
            except Exception:
                continue
        tb = tb.tb_next
    return found


def seed_option(value: int | None) -> int | None:
    """Callback of every ``--seed``: an integer from 0 to 2**32 - 1 (see :mod:`cellsynth.seeds`)."""
    return value if value is None else check_seed(value, "--seed")


def step_option(value: str | None) -> str | None:
    """Callback of every ``--step``: a positive duration ("10min", "1h"); the loader gets the text as given."""
    from cellsynth.data.model import parse_step

    if value is not None:
        parse_step(value, name="--step")
    return value


def yaml_value(text: str, where: str, fix: str):
    """``text`` parsed as YAML; a :class:`ConfigError` naming ``where``, the line and column, and ``fix``."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"{where}: not valid YAML{at} ({problem}); {fix}") from None


def yaml_mapping(path: Path) -> dict:
    """A YAML file of ``option: value`` lines (a config or a preset); empty file: ``{}``."""
    fix = "fix its syntax (see the files in configs/ for examples)"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8); {fix}") from None
    loaded = yaml_value(text, str(path), fix) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path}: expected a mapping of option: value, got a {type(loaded).__name__}; {fix}"
        )
    return loaded
