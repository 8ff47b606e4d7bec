"""Which code computed a benchmark cell, so that reused results from other code are never silent.

A bench reuses a finished cell when its stored config equals the one asked for
(:mod:`cellsynth.benchmark.run`, :mod:`cellsynth.benchmark.users`): a killed bench resumes, and rows or seeds
can be added later. But a change to a model's code that keeps its config (a bug fix, a new default inside a
network) would then reuse scores that this code does not give. Every result therefore records
:func:`code_stamp`, the package version and a digest of cellsynth's own source files, and every table says
which code computed its cells (:func:`code_note`). Cells from other code are reported, not recomputed: the
user decides (deleting a cell's result file makes the next run compute it again).
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cellsynth

__all__ = ["code_note", "code_stamp", "other_code", "source_digest", "warn_other_code"]

_SOURCE_SUFFIXES = (".py", ".yaml")
_PACKAGE = Path(__file__).resolve().parents[1]


@functools.cache
def source_digest(root: Path = _PACKAGE) -> str:
    """The first 12 hex digits of a SHA-256 over every ``.py`` and ``.yaml`` file of the cellsynth package
    at ``root`` (default: this one; its path relative to the package and its bytes, in path order): the same
    for the same source tree on any machine, different after any change to code or presets."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts and path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def code_stamp() -> dict[str, str]:
    """``{"cellsynth": version, "source": source_digest()}``: what a result records as ``"code"``."""
    return {"cellsynth": cellsynth.__version__, "source": source_digest()}


def _describe(stamp: dict[str, str] | None) -> str:
    if not stamp:
        return "code not recorded"
    return f"cellsynth {stamp.get('cellsynth', '?')}, source {stamp.get('source', '?')}"


def _listed(others: list[tuple[str, str]]) -> str:
    return "; ".join(f"{name} ({code})" for name, code in others)


def other_code(records: Iterable[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """``(name, code)`` of the records ``(name, record)`` not computed by this code (``code`` described in
    words; results written before the stamp existed say "code not recorded")."""
    here = code_stamp()
    return [(name, _describe(record.get("code"))) for name, record in records if record.get("code") != here]


def code_note(records: Iterable[tuple[str, dict[str, Any]]]) -> str:
    """One markdown bullet for a table: the code that computed every cell, or which cells came from other
    code and how to recompute them."""
    records = list(records)
    here = f"Code: {_describe(code_stamp())}"
    others = other_code(records)
    if not others:
        return f"- {here} (every cell)."
    return (
        f"- {here}; **{len(others)} of {len(records)} cell(s) computed by other code**, reused because their "
        f"config is the same: {_listed(others)}. Their scores may differ from this code's; delete their result "
        "files to recompute them."
    )


def warn_other_code(records: Iterable[tuple[str, dict[str, Any]]], where: Path | str) -> None:
    """A ``UserWarning`` naming the reused results in ``where`` that other code computed (nothing if none)."""
    others = other_code(records)
    if others:
        warnings.warn(
            f"{where}: {len(others)} reused cell(s) were computed by other code than this "
            f"({_describe(code_stamp())}): {_listed(others)}; their scores may differ from this code's, delete "
            "their result files to recompute them",
            UserWarning,
            stacklevel=3,
        )
