"""Trajectory baselines of MSTDiff's comparison (user generators); see docs/baselines.md."""
