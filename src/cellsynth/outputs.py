"""Where cellsynth may write: the one rule every writer follows, and the atomic writes that apply it.

Every writer goes through this module: the commands (``data synth``, ``data import ...``, ``fit``,
``generate``, ``evaluate``, ``bench``, ``demo``) and the Python API (``cellsynth.data.write``,
``write_stations``, ``SyntheticCity.write``, ``Generator.save``, ``report.write_report``, ``run_benchmark``,
``run_demo``).

**The rule** (:func:`check_output`). cellsynth writes an output path only when it is

1. new, or an empty directory; or
2. a cellsynth output of the same kind (:data:`KINDS`): a directory holding the marker file
   :data:`MARKER` (``.cellsynth-output.json``, written into every output directory, naming its kind), or a
   directory written before the marker existed whose entries are all ones cellsynth writes for that kind and
   include its signature (a dataset: ``stations.parquet`` with ``traffic.parquet`` or ``mobility.parquet``;
   a model run: ``generator.json`` or ``checkpoints/``; ...). A stations table, the one single-file output,
   is a Parquet file whose cellsynth metadata says it is one.

Kinds that are *replaced* as a whole (dataset, synthetic city, evaluation, stations table) also refuse a
marked directory holding files cellsynth did not put there, since replacing it would delete them. Kinds that
are *written into* and resumed (model run, bench, demo) keep whatever else their marked directory holds.
Anything else is refused with an :class:`~cellsynth.errors.OutputError` saying what is there and how to
proceed: nothing is deleted. The command line also passes its inputs: an output is never an input, nor a
directory holding one (compared after resolving symbolic links); and a replaced output is never the current
directory or one of its parents.

**Atomic writes** (:func:`atomic_directory`, :func:`atomic_file`). An output is written to a temporary sibling
``.NAME.tmp-PID-TOKEN`` and swapped in with renames (an existing directory moves to ``.NAME.old-PID-TOKEN``
for the instant of the swap): a failure or a kill never leaves a half-written output where a good one was. A
kill can leave those temporaries behind; the next write of the same target removes them once the process
``PID`` is no longer running (:func:`remove_stale_temporaries`).

**Failures.** An ``OSError`` while writing (no space left, permission denied, read-only disk...) becomes an
``OutputError`` naming the path and the fix, and the earlier output stays as it was.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cellsynth.errors import CellsynthError, OutputError

__all__ = [
    "BENCH",
    "DATASET",
    "DEMO",
    "EVALUATION",
    "KINDS",
    "MARKER",
    "MODEL_RUN",
    "PARQUET_METADATA_KEY",
    "SPLIT",
    "STATIONS_TABLE",
    "SYNTHETIC_CITY",
    "OutputKind",
    "atomic_directory",
    "atomic_file",
    "check_output",
    "claim_output_dir",
    "is_stations_table",
    "remove_stale_temporaries",
]

#: The marker file written inside every output directory: ``{"kind": ..., "cellsynth_version": ...}``.
MARKER = ".cellsynth-output.json"

DATASET = "dataset"
SYNTHETIC_CITY = "synthetic city"
MODEL_RUN = "model run"
EVALUATION = "evaluation"
BENCH = "bench"
DEMO = "demo"
SPLIT = "split"
#: The single-file output (``write_stations``): recognised by its Parquet metadata, not by a marker.
STATIONS_TABLE = "stations table"
#: The key of cellsynth's entry in the schema metadata of every Parquet file it writes (``cellsynth.data.io``).
PARQUET_METADATA_KEY = b"cellsynth"

# A temporary of target NAME: .NAME.tmp-PID-TOKEN (being written) or .NAME.old-PID-TOKEN (being swapped out).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


@dataclass(frozen=True)
class OutputKind:
    """One kind of output directory: what cellsynth writes at its top level, and how it is written."""

    name: str
    label: str
    #: Every entry cellsynth writes at the top of this kind's directory.
    entries: frozenset[str]
    #: Sets of entries that identify an unmarked (older) output of this kind; one must be present in full.
    signatures: tuple[frozenset[str], ...]
    #: True: replaced as a whole by :func:`atomic_directory`; False: written into and resumed.
    replaced: bool

    def writes(self, entry: str) -> bool:
        """Whether ``entry`` is something cellsynth puts at the top of this kind's directory (the marker and
        a temporary of a known entry included)."""
        temporary = _TEMPORARY.match(entry)
        name = temporary["name"] if temporary else entry
        return name == MARKER or name in self.entries

    def recognises(self, entries: Iterable[str]) -> bool:
        """Whether unmarked ``entries`` are an older output of this kind: nothing else, and a signature."""
        entries = set(entries)
        return all(map(self.writes, entries)) and any(sig <= entries for sig in self.signatures)


def _kind(name, label, entries, signatures, replaced) -> OutputKind:
    return OutputKind(name, label, frozenset(entries), tuple(map(frozenset, signatures)), replaced)


#: The kinds of output directory, by name (the name stored in the marker).
KINDS: dict[str, OutputKind] = {
    kind.name: kind
    for kind in (
        _kind(
            DATASET,
            "a cellsynth dataset",
            ["stations.parquet", "traffic.parquet", "mobility.parquet"],
            [["stations.parquet", "traffic.parquet"], ["stations.parquet", "mobility.parquet"]],
            replaced=True,
        ),
        _kind(
            SYNTHETIC_CITY,
            "a synthetic city",
            ["traffic", "users", "knowledge_graph.parquet", "labels.parquet", "config.json"],
            [["traffic", "users", "config.json"]],
            replaced=True,
        ),
        _kind(
            SPLIT,
            "a split of a dataset (train/, held-out/)",
            ["train", "held-out"],
            [["train", "held-out"]],
            replaced=True,
        ),
        _kind(
            EVALUATION,
            "an evaluation (metrics.json, report.html)",
            ["metrics.json", "report.html"],
            [["metrics.json", "report.html"]],
            replaced=True,
        ),
        # .model: the staging directory of Generator.save in cellsynth before the marker; a kill left it.
        _kind(
            MODEL_RUN,
            "a model run directory",
            ["generator.json", "weights.safetensors", "checkpoints", "fit.json", ".model"],
            [["generator.json"], ["checkpoints"]],
            replaced=False,
        ),
        _kind(
            BENCH,
            "a benchmark directory",
            [
                "bench.json",
                "results",
                "runs",
                "table.md",
                "results.json",
                "leaderboard.md",
                "leaderboard.json",
            ],
            [["bench.json"]],
            replaced=False,
        ),
        _kind(
            DEMO,
            "a demo output directory",
            ["city", "stations", "users", "report.html"],
            [["city"]],
            replaced=False,
        ),
    )
}


# -- the rule ------------------------------------------------------------------------------------------------
def check_output(path: str | os.PathLike, kind: str, *, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Raise :class:`~cellsynth.errors.OutputError` unless cellsynth may write a ``kind`` output (a name in
    :data:`KINDS`, or :data:`STATIONS_TABLE`) at ``path`` (see the module docstring for the rule); ``inputs``
    are the paths the output must not be, nor hold. Returns ``path`` with symbolic links resolved: the path
    to write. Reads only."""
    if kind != STATIONS_TABLE and kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}; one of {[*KINDS, STATIONS_TABLE]}")
    path = Path(path)
    target = path.resolve()
    shown = str(path) if target == path.absolute() else f"{path} (= {target})"
    with _os_errors_explained(path):
        for given in inputs:
            source = Path(given).resolve()
            if source == target:
                raise OutputError(
                    f"{shown} is also an input of this command ({given}); writing the output there would "
                    "replace it: choose another output path"
                )
            if source.is_relative_to(target):
                raise OutputError(
                    f"{shown} holds an input of this command ({given}); writing the output there could delete "
                    "it: choose another output path"
                )
        if kind == STATIONS_TABLE:
            _check_stations_table(shown, target)
        else:
            spec = KINDS[kind]
            if spec.replaced and Path.cwd().resolve().is_relative_to(target):
                raise OutputError(
                    f"{shown} is the current directory or holds it; cellsynth replaces the output directory "
                    f"of {spec.label} as a whole: choose a new or empty directory"
                )
            _check_directory(shown, target, spec)
    return target


def _check_directory(shown: str, target: Path, spec: OutputKind) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputError(
            f"{shown} is a file, not a directory; cellsynth never overwrites other files: choose a new or "
            f"empty directory for {spec.label}"
        )
    entries = sorted(p.name for p in target.iterdir())
    if not entries:
        return
    marked = _marker_kind(target)
    if marked == spec.name:
        foreign = [e for e in entries if not spec.writes(e)]
        if spec.replaced and foreign:
            raise OutputError(
                f"{shown} holds {spec.label} and also files cellsynth did not write ({_listing(target, foreign)}); "
                f"replacing it would delete them: move them out, choose a new or empty directory, or remove "
                f"{shown} yourself"
            )
        return
    if marked is None and spec.recognises(entries):
        return
    other = _output_kind_at(target)
    if other is not None:
        raise OutputError(
            f"{shown} holds {other.label}, not {spec.label}; cellsynth writes over an output only with one "
            f"of the same kind: choose a new or empty directory, or remove {shown} yourself"
        )
    raise OutputError(
        f"{shown} is not empty and is not {spec.label} written by cellsynth (it holds "
        f"{_listing(target, entries)}); cellsynth never deletes or writes among other files: choose a new or "
        f"empty directory, or remove {shown} yourself"
    )


def is_stations_table(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Parquet file that :func:`cellsynth.data.write_stations` wrote (by its cellsynth
    metadata: ``{"kind": "stations", ...}`` under :data:`PARQUET_METADATA_KEY`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(PARQUET_METADATA_KEY)
        return raw is not None and json.loads(raw).get("kind") == "stations"
    except (OSError, pa.ArrowInvalid, ValueError, AttributeError):
        return False


def _check_stations_table(shown: str, target: Path) -> None:
    # A stations table beside others in a cellsynth output (a dataset's stations.parquet, say) belongs to that
    # output: writing there would change it. The staging directory of a write in progress is exempt.
    owner = _output_kind_at(target.parent)
    if owner is not None and not _TEMPORARY.match(target.parent.name):
        raise OutputError(
            f"{shown} is inside {owner.label} ({target.parent}); writing there would change that output: "
            "choose a path outside it"
        )
    if not target.exists():
        return
    if target.is_dir():
        raise OutputError(
            f"{shown} is a directory; give the path of the stations table file to write (.parquet)"
        )
    if not is_stations_table(target):
        raise OutputError(
            f"{shown} exists and is not a stations table written by cellsynth; cellsynth never overwrites "
            f"other files: choose a new file name, or remove {shown} yourself"
        )


def _output_kind_at(directory: Path) -> OutputKind | None:
    """The kind of cellsynth output ``directory`` is, by its marker or else its layout; None if it is none."""
    marked = _marker_kind(directory)
    if marked is not None:
        return KINDS[marked]
    entries = [p.name for p in directory.iterdir()] if directory.is_dir() else []
    return next((kind for kind in KINDS.values() if entries and kind.recognises(entries)), None)


def _marker_kind(directory: Path) -> str | None:
    """The kind named by ``directory``'s marker; None without a (readable, known) marker."""
    try:
        kind = json.loads((directory / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if kind in KINDS else None


def _listing(directory: Path, names: list[str], shown: int = 5) -> str:
    listed = [f"{n}/" if (directory / n).is_dir() else n for n in names[:shown]]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(listed) + more


def _marker_text(kind: str) -> str:
    from cellsynth import __version__

    return (
        json.dumps(
            {
                "kind": kind,
                "cellsynth_version": __version__,
                "about": f"written by cellsynth: a later cellsynth command may replace or resume this {kind}, "
                "and refuses to write anything else here",
            },
            indent=2,
        )
        + "\n"
    )


def claim_output_dir(path: str | os.PathLike, kind: str, *, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Check ``path`` (:func:`check_output`) for a kind that is written into and resumed (model run, bench,
    demo), create it and mark it; returns ``path``."""
    if kind not in KINDS or KINDS[kind].replaced:
        raise ValueError(f"{kind!r} is not a kind of output directory that is written into")
    target = check_output(path, kind, inputs=inputs)
    with _os_errors_explained(path):
        target.mkdir(parents=True, exist_ok=True)
        if _marker_kind(target) != kind:
            with atomic_file(target / MARKER) as tmp:
                tmp.write_text(_marker_text(kind), encoding="utf-8")
    return Path(path)


# -- atomic writes ---------------------------------------------------------------------------------------------
@contextmanager
def atomic_directory(path: str | os.PathLike, kind: str) -> Iterator[Path]:
    """Yield an empty temporary directory (holding the marker of ``kind``) to write the output into; when the
    block ends without error it replaces ``path``, otherwise it is removed and ``path`` is untouched.

    ``path`` must pass :func:`check_output` for ``kind``, a kind replaced as a whole; a symbolic link is
    followed (the directory it points to is replaced). The swap is two renames (old -> backup, new -> path,
    undone if the second fails): at every instant either the old or the new complete output exists.
    """
    if kind not in KINDS or not KINDS[kind].replaced:
        raise ValueError(f"{kind!r} is not a kind of output directory that is replaced as a whole")
    target = check_output(path, kind)
    with _os_errors_explained(path):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        staging = _temporary_sibling(target, "tmp")
        staging.mkdir()
        try:
            (staging / MARKER).write_text(_marker_text(kind), encoding="utf-8")
            yield staging
            _swap_in(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful swap


def _swap_in(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
        return
    backup = _temporary_sibling(target, "old")
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


@contextmanager
def atomic_file(path: str | os.PathLike, *, kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; when the block ends without error it replaces
    ``path`` (``os.replace``, atomic), otherwise it is removed: a reader never sees half a file, and a failed
    write keeps the old one. Creates ``path``'s parent directory.

    With ``kind`` (:data:`STATIONS_TABLE`), ``path`` must pass :func:`check_output` first. Without, ``path``
    is taken to lie inside an output directory that was checked (a model run's ``generator.json``, ...).
    """
    target = check_output(path, kind) if kind is not None else Path(path)
    with _os_errors_explained(path):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        tmp = _temporary_sibling(target, "tmp")
        try:
            yield tmp
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def _temporary_sibling(target: Path, what: str) -> Path:
    return target.with_name(f".{target.name}.{what}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries an interrupted write of ``target`` left beside it (``.NAME.tmp-PID-TOKEN``,
    ``.NAME.old-PID-TOKEN``) whose process ``PID`` no longer runs; returns what was removed.

    Only this target's temporaries, and only stale ones: a write in progress (its process runs) keeps its own.
    PIDs are this machine's, so two machines writing the same target on a shared disk is not supported.
    """
    target = Path(target)
    try:
        siblings = list(target.parent.iterdir())
    except FileNotFoundError:
        return []
    removed = []
    for sibling in siblings:
        found = _TEMPORARY.match(sibling.name)
        if found is None or found["name"] != target.name or _process_runs(int(found["pid"])):
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        removed.append(sibling)
    return removed


def _process_runs(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) is no probe: keep everything
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


# -- failures --------------------------------------------------------------------------------------------------
_FIXES = {
    errno.ENOSPC: "free some disk space or choose an output on another disk",
    errno.EDQUOT: "free some of your disk quota or choose an output on another disk",
    errno.EACCES: "choose an output directory you can write to, or change its permissions",
    errno.EPERM: "choose an output directory you can write to, or change its permissions",
    errno.EROFS: "choose an output directory on a writable disk",
}


@contextmanager
def _os_errors_explained(path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing the output ``path`` into a one-line
    :class:`~cellsynth.errors.OutputError` naming the path, the cause and the fix."""
    try:
        yield
    except OSError as err:
        if isinstance(err, CellsynthError) or any(_TEMPORARY.match(part) for part in Path(path).parts):
            raise  # a part of an output being staged: the writer of the whole output explains it
        cause = err.strerror or str(err) or type(err).__name__
        at = f" (at {err.filename})" if err.filename and str(err.filename) != str(path) else ""
        fix = _FIXES.get(err.errno, "check the output path")
        raise OutputError(
            f"cannot write {path}: {cause}{at}; {fix}. Any earlier output at {path} is unchanged"
        ) from err
