"""The urban knowledge graph: (head, relation, tail) string triplets about stations and their city.

MSTDiff embeds this graph with TuckER to tell which stations play similar roles in the city. The graph
has four relations, each between entities of fixed types:

============  =====================  ===========================================================
relation      head -> tail           meaning
============  =====================  ===========================================================
BaseLocateAt  station -> region      the station stands in that region (a square of the city)
BaseBelongTo  station -> area        the station belongs to that business area (a district)
BaseBorderBy  station -> station     the two stations' cells border each other (both directions)
ServedBy      poi -> station         the point of interest is served by (nearest to) the station
============  =====================  ===========================================================

Entity names are ``"<type>:<name>"`` with type ``station``, ``region``, ``area`` or ``poi``. A station
entity is named by its station id, ``"station:" + Stations.ids[i]`` (:func:`station_entity`), so a
downstream model maps stations to their embeddings by name: ``kg.station_ids()`` lists them and
``encode()`` returns the entity names in the order of the integer codes. Other names are free
(the synthetic city uses ``region:<k>``, ``area:<k>``, ``poi:<k>``).

On disk: one Parquet file with string columns ``head, relation, tail``; writes are atomic (temp file in
the same directory, then :func:`os.replace`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cellsynth.data.io import read_parquet
from cellsynth.errors import DataError

__all__ = [
    "ENTITY_TYPES",
    "RELATIONS",
    "RELATION_TYPES",
    "KnowledgeGraph",
    "read_knowledge_graph",
    "station_entity",
    "write_knowledge_graph",
]

RELATIONS: tuple[str, ...] = ("BaseLocateAt", "BaseBelongTo", "BaseBorderBy", "ServedBy")
"""The four relation names, in the order of their integer codes in :meth:`KnowledgeGraph.encode`."""

RELATION_TYPES: dict[str, tuple[str, str]] = {
    "BaseLocateAt": ("station", "region"),
    "BaseBelongTo": ("station", "area"),
    "BaseBorderBy": ("station", "station"),
    "ServedBy": ("poi", "station"),
}
ENTITY_TYPES: tuple[str, ...] = ("station", "region", "area", "poi")

_META_KEY = b"cellsynth"
FORMAT_VERSION = 1


def station_entity(station_id: str) -> str:
    """The entity name of a station: ``"station:<id>"``."""
    return f"station:{station_id}"


def _entity_types(names: np.ndarray) -> np.ndarray:
    """The ``<type>`` prefix of each entity name (``""`` where there is no colon)."""
    return np.asarray(pd.Series(names, dtype="string").str.partition(":")[0].to_numpy(dtype=object))


@dataclass(frozen=True, eq=False)
class KnowledgeGraph:
    """Triplets ``(heads[m], relations[m], tails[m])``: three 1-D object arrays of strings, equal length.

    Validated on construction: non-empty, equal lengths, every relation one of :data:`RELATIONS`, every
    entity a non-empty ``"<type>:<name>"`` whose type fits the relation (see the module docstring).
    Duplicate triplets are allowed and kept as given.
    """

    heads: np.ndarray
    relations: np.ndarray
    tails: np.ndarray
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        src = self.source
        arrays = {}
        for name in ("heads", "relations", "tails"):
            arr = np.asarray(getattr(self, name), dtype=object)
            if arr.ndim != 1:
                raise DataError(f"knowledge graph {name} must be 1-D, got shape {arr.shape}", source=src)
            arrays[name] = arr
        m = {len(a) for a in arrays.values()}
        if len(m) != 1:
            sizes = ", ".join(f"{k}={len(v)}" for k, v in arrays.items())
            raise DataError(f"knowledge graph arrays differ in length ({sizes})", source=src)
        if len(arrays["heads"]) == 0:
            raise DataError("knowledge graph is empty: no triplets", source=src)
        for name, arr in arrays.items():
            bad = np.array([not isinstance(v, str) or v == "" for v in arr])
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(
                    f"knowledge graph {name}[{i}] is {arr[i]!r}; "
                    "entities and relations must be non-empty strings",
                    source=src,
                )
        rel = arrays["relations"]
        unknown = sorted(set(np.unique(rel.astype(str))) - set(RELATIONS))
        if unknown:
            i = int(np.argmax(np.isin(rel.astype(str), unknown)))
            raise DataError(
                f"unknown relation(s) {unknown} (first at triplet {i}); relations are {list(RELATIONS)}",
                source=src,
            )
        head_t, tail_t = _entity_types(arrays["heads"]), _entity_types(arrays["tails"])
        for r, (ht, tt) in RELATION_TYPES.items():
            sel = rel == r
            wrong = sel & ((head_t != ht) | (tail_t != tt))
            if wrong.any():
                i = int(np.argmax(wrong))
                raise DataError(
                    f"triplet {i} ({arrays['heads'][i]!r}, {r}, {arrays['tails'][i]!r}): {r} links a {ht} "
                    f"to a {tt}; name entities '<type>:<name>' with type in {list(ENTITY_TYPES)} "
                    f"(e.g. 'station:S0001')",
                    source=src,
                )
        for name, arr in arrays.items():
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return len(self.heads)

    @property
    def entities(self) -> np.ndarray:
        """Sorted unique entity names (heads and tails): the order of the integer codes of :meth:`encode`."""
        return np.unique(np.concatenate([self.heads, self.tails]).astype(str)).astype(object)

    @property
    def relation_names(self) -> tuple[str, ...]:
        """The relations that occur, in the canonical order of :data:`RELATIONS`."""
        present = set(np.unique(self.relations.astype(str)))
        return tuple(r for r in RELATIONS if r in present)

    def station_ids(self) -> np.ndarray:
        """Station ids of the station entities (``"station:<id>"`` -> ``<id>``), sorted."""
        ents = self.entities
        return np.array([e[len("station:") :] for e in ents if e.startswith("station:")], dtype=object)

    def count(self, relation: str) -> int:
        """Number of triplets with this relation."""
        return int((self.relations == relation).sum())

    def encode(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """Integer triplets ``int64 [M, 3]`` (head, relation, tail codes), the entity names (sorted, code ->
        name) and the relation names (:data:`RELATIONS`: all four, so codes are the same in every graph)."""
        names = np.concatenate([self.heads, self.tails]).astype(str)
        ents, inverse = np.unique(names, return_inverse=True)
        m = len(self)
        codes = {r: i for i, r in enumerate(RELATIONS)}
        rel = np.fromiter((codes[r] for r in self.relations), dtype=np.int64, count=m)
        triplets = np.stack([inverse[:m], rel, inverse[m:]], axis=1).astype(np.int64)
        return triplets, ents.astype(object), RELATIONS

    def to_frame(self) -> pd.DataFrame:
        """Columns ``head, relation, tail`` (pandas string dtype), one row per triplet."""
        return pd.DataFrame(
            {
                "head": pd.array(self.heads.astype(str), dtype="string"),
                "relation": pd.array(self.relations.astype(str), dtype="string"),
                "tail": pd.array(self.tails.astype(str), dtype="string"),
            }
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, source: str | None = None) -> KnowledgeGraph:
        """Inverse of :meth:`to_frame`."""
        missing = [c for c in ("head", "relation", "tail") if c not in frame.columns]
        if missing:
            raise DataError(
                f"knowledge graph table lacks column(s) {missing} (columns: {list(frame.columns)})",
                source=source,
            )

        def col(name):
            values = frame[name]
            if values.isna().any():
                i = int(np.argmax(values.isna().to_numpy()))
                raise DataError(f"knowledge graph column {name!r} row {i} is empty", source=source)
            return values.astype(str).to_numpy(dtype=object)

        return cls(col("head"), col("relation"), col("tail"), source=source)

    def equals(self, other: KnowledgeGraph) -> bool:
        """Same triplets in the same order."""
        return (
            len(self) == len(other)
            and np.array_equal(self.heads.astype(str), other.heads.astype(str))
            and np.array_equal(self.relations.astype(str), other.relations.astype(str))
            and np.array_equal(self.tails.astype(str), other.tails.astype(str))
        )


def write_knowledge_graph(kg: KnowledgeGraph, path: str | os.PathLike) -> Path:
    """Write ``kg`` to one Parquet file, atomically (temp file beside it, then :func:`os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        table = pa.Table.from_pandas(kg.to_frame(), preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[_META_KEY] = json.dumps({"kind": "knowledge_graph", "version": FORMAT_VERSION}).encode()
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_knowledge_graph(path: str | os.PathLike) -> KnowledgeGraph:
    """Read a knowledge graph written by :func:`write_knowledge_graph` (or any Parquet/CSV file with
    ``head, relation, tail`` columns)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", source=str(path))
    if path.suffix.lower() == ".csv":
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise DataError(f"cannot parse CSV: {err}", source=str(path)) from err
    else:
        frame = read_parquet(path).to_pandas()
    return KnowledgeGraph.from_frame(frame, source=str(path))
