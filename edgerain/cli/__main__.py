"""``python -m edgerain.cli`` (what ``torchrun -m edgerain.cli train ...`` runs)."""

from edgerain.cli import entry

entry()
