"""User-facing errors.

Anything a user can cause (a bad file, an unknown model name, corrupt weights) raises
:class:`EdgerainError`. The CLI turns it into one line on stderr and exit code 2; the Python API
lets it propagate so callers can catch it.
"""

from __future__ import annotations


class EdgerainError(Exception):
    """An error caused by input the user supplied; its message is a complete sentence."""

    exit_code = 2


class MissingCapabilityError(EdgerainError):
    """A feature needs software or hardware that is not present here (a GPU, TensorRT, ...)."""
