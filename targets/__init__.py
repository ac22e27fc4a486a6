"""Built-in deployment target profiles (one JSON file each), installed as ``edgerain.builtin_targets``.

This folder holds data only; :mod:`edgerain.targets` reads, validates and resolves the profiles.
"""
