"""Baselines of MSTDiff's user-level traffic, under the user-generator contract."""
