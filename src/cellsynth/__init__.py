"""cellsynth: learn from real cellular-network data and generate realistic synthetic data."""

from cellsynth.errors import CellsynthError, ConfigError, DataError, NotFittedError

__version__ = "0.1.0"

__all__ = ["CellsynthError", "ConfigError", "DataError", "NotFittedError", "__version__", "load"]


def load(directory):
    """Load any saved generator (see :func:`cellsynth.generators.load`)."""
    from cellsynth.generators import load as _load

    return _load(directory)
