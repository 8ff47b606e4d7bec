"""The seeds cellsynth accepts: integers from 0 to ``MAX_SEED`` = 2**32 - 1.

One range for every seed (fitting, generating, the synthetic city, the demo): fitting hands its seed to
Lightning's ``seed_everything``, which takes no more than 32 bits, and a negative seed is refused by
numpy's generators.
"""

from __future__ import annotations

from cellsynth.errors import ConfigError

__all__ = ["MAX_SEED", "check_seed"]

MAX_SEED = 2**32 - 1


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` if it is an integer in ``0..MAX_SEED``, else a :class:`ConfigError` naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} {seed!r} is out of range: give an integer from 0 to {MAX_SEED}")
    return seed
