"""MSTDiff's trajectory baselines: user generators that generate station sequences (docs/baselines.md)."""
