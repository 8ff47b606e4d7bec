"""``python -m cellsynth.cli``: the ``cellsynth`` script."""

from cellsynth.cli import main

main()
