"""One dispatch point per fused op: pick a backend, say why others were skipped, run it.

Choice: the ``backend=`` argument, else ``$EDGERAIN_OPS_BACKEND``, else ``auto``. ``auto`` takes
Triton for CUDA tensors, then the extension's CUDA kernels, then the PyTorch reference (the order
of ``BACKENDS``, chosen from H100 measurements). A forced backend that cannot serve an input
raises :class:`MissingCapabilityError` naming the reason. While a model is being exported to ONNX or traced by TorchScript the reference
always runs, so exported graphs contain plain ONNX ops and never an opaque custom op.

Fused backends run through the torch custom ops ``edgerain::mgca_window_attention`` and
``edgerain::updw`` (custom_ops.py), so torch.compile / torch.export / CUDA graphs see one node;
their backward recomputes the reference (training works with any backend, at reference speed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from edgerain.errors import EdgerainError, MissingCapabilityError
from edgerain.ops.backends import BACKENDS, OPS

ENV_VAR = "EDGERAIN_OPS_BACKEND"
CHOICES = ("auto", *BACKENDS)


def requested_backend(backend: str | None = None) -> str:
    """The backend asked for: the argument, else $EDGERAIN_OPS_BACKEND, else 'auto'."""
    name = backend if backend is not None else os.environ.get(ENV_VAR, "auto")
    name = name.strip().lower() or "auto"
    if name not in CHOICES:
        source = "backend=" if backend is not None else f"${ENV_VAR}"
        raise EdgerainError(f"unknown ops backend {name!r} (from {source}); choose one of {', '.join(CHOICES)}")
    return name


def exporting() -> bool:
    """Whether an exporter is tracing the model: then only plain PyTorch ops may appear."""
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.jit.is_scripting())


def choose(op: str, args: Sequence[Any], backend: str | None = None) -> tuple[str, list[tuple[str, str]]]:
    """(backend that will run, [(skipped backend, why)]) for ``op`` on ``args``."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}")
    name = requested_backend(backend)
    if exporting():
        why = "model is being exported/traced: plain PyTorch ops only"
        return "reference", [(n, why) for n in BACKENDS if n != "reference"]
    if name != "auto":
        ok, why = BACKENDS[name].supports(op, args)
        if not ok:
            raise MissingCapabilityError(f"ops backend {name!r} cannot run {op}: {why}")
        return name, []
    skipped: list[tuple[str, str]] = []
    on_cuda = any(isinstance(a, Tensor) and a.is_cuda for a in args)
    for candidate, impl in BACKENDS.items():
        if candidate != "reference" and not on_cuda:
            skipped.append((candidate, "auto uses fused kernels for CUDA tensors only"))
            continue
        ok, why = impl.supports(op, args)
        if ok:
            return candidate, skipped
        skipped.append((candidate, why))
    raise AssertionError("the reference backend serves every input")  # pragma: no cover


def run_reference(op: str, args: Sequence[Any]) -> Tensor:
    from edgerain.ops.reference import mgca_window_attention_reference, updw_reference

    if op == "mgca_window_attention":
        return mgca_window_attention_reference(*args)
    return updw_reference(*args)


def _dispatch(op: str, args: tuple, backend: str | None) -> Tensor:
    from edgerain.ops import custom_ops

    if torch.compiler.is_compiling() and not exporting():
        # Under torch.compile / torch.export the availability checks must not be traced: the
        # custom op (one graph node) makes the choice when it runs.
        return custom_ops.OP_BY_NAME[op](*args, requested_backend(backend))
    name, _ = choose(op, args, backend)
    if name == "reference":
        return run_reference(op, args)
    return custom_ops.OP_BY_NAME[op](*args, name)


def mgca_window_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, window: int, shift: int, backend: str | None = None
) -> Tensor:
    """Masked, gated window attention; q, k, v (B, heads, d, H, W), mask (B, 1, H, W) -> like q.

    Semantics: :func:`edgerain.ops.reference.mgca_window_attention_reference`.
    """
    return _dispatch("mgca_window_attention", (q, k, v, mask, int(window), int(shift)), backend)


def updw(
    x: Tensor,
    dw_weight: Tensor,
    dw_bias: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    pw_weight: Tensor,
    pw_bias: Tensor,
    backend: str | None = None,
) -> Tensor:
    """UpDWBlock: (B, Cin, h, w) -> (B, Cout, 2h, 2w). Semantics: :func:`edgerain.ops.reference.updw_reference`."""
    return _dispatch("updw", (x, dw_weight, dw_bias, ln_weight, ln_bias, pw_weight, pw_bias), backend)


def backend_report() -> list[tuple[str, str, bool, str]]:
    """(op, backend, available, reason) for every op and backend, for `edgerain doctor`."""
    rows = []
    for op in OPS:
        for name, impl in BACKENDS.items():
            ok, why = impl.available()
            rows.append((op, name, ok, why))
    return rows
