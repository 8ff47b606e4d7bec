"""MSTDiff's user-level traffic baselines; each module registers by name in
:mod:`cellsynth.generators.registry` and is imported lazily."""
