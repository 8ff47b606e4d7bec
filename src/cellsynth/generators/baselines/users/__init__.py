"""MSTDiff's user-level traffic baselines (``adaptive``, ``msh-gan``, ``csdi``, ``dit``), under the
user-generator contract: the shared glue in :mod:`._trajectory`, the families in :mod:`._gan` and
:mod:`._diffusion`; each model registers by name in :mod:`cellsynth.generators.registry` and is imported
lazily."""
