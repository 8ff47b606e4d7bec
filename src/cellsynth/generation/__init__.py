"""Generation beyond one call: chunked, streamed to a multi-part dataset, on this process or a Ray cluster.

:func:`generate_dataset` writes a :class:`ChunkPlan` to a dataset directory one chunk at a time (``engine=
"local"``) or with a pool of Ray workers (``engine="ray"``, :mod:`cellsynth.generation.ray_engine`); both write
the same bytes for the same seed. See docs/scale.md, "Generation beyond one process".
"""

from cellsynth.generation.chunks import (
    DEFAULT_BATCH,
    ChunkPlan,
    chunk_seed,
    finish_parts,
    generate_chunk,
    generate_dataset,
)

__all__ = ["DEFAULT_BATCH", "ChunkPlan", "chunk_seed", "finish_parts", "generate_chunk", "generate_dataset"]
