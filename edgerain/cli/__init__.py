"""The ``edgerain`` command: a thin Typer layer over the Python API.

Each module in this package defines ``register(app)`` and adds its commands; nothing imports the
CLI. Heavy imports (torch, onnx, modelopt) happen inside the commands so ``--help`` stays fast.
User errors (:class:`edgerain.errors.EdgerainError`) print one line and exit with code 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import sys
import warnings

import typer

app = typer.Typer(
    name="edgerain",
    help="Deploy CLIP-driven single-image deraining networks on Jetson Orin and desktop GPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(app)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _usage_error_message(exc: Exception) -> str | None:
    """One line for a command-line usage error (typer >= 0.29 vendors its own click), else None."""
    import click

    classes: list[type] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException

        classes.append(TyperClickException)
    except ImportError:
        pass
    if not isinstance(exc, tuple(classes)):
        return None
    text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    from edgerain.errors import EdgerainError

    # open_clip logs at WARNING through the root logger; route it through our own format.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _register_all()
    try:
        # In non-standalone mode a command's typer.Exit(code) comes back as the return value.
        code = app(args=argv, standalone_mode=False)
    except EdgerainError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        message = _usage_error_message(exc)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        return 2
    return int(code or 0)


def entry() -> None:
    sys.exit(main())
