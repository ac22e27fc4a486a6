"""The fused ops as torch custom ops (namespace ``edgerain``), one graph node each.

``edgerain::mgca_window_attention(q, k, v, mask, window, shift, backend)`` and
``edgerain::updw(x, dw_weight, dw_bias, ln_weight, ln_bias, pw_weight, pw_bias, backend)`` run the
backend named (or, for ``auto``, the one :func:`edgerain.ops.dispatch.choose` picks when the op
runs: that is how a compiled graph dispatches), with one kernel registered for CPU and CUDA (the backend choice is per device)
and fake implementations for torch.compile / torch.export (shapes only). The kernels are
forward-only: the registered backward recomputes the PyTorch reference and differentiates it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from edgerain.ops.backends import BACKENDS
from edgerain.ops.dispatch import choose, run_reference


def _run(op: str, backend: str, args: tuple) -> Tensor:
    name, _ = choose(op, args, backend)  # a forced backend that cannot serve raises, naming why
    if name == "reference":
        # Contiguous like the fake implementations say (the reference may return a permuted layout).
        return run_reference(op, args).contiguous()
    return BACKENDS[name].run(op, args)  # type: ignore[union-attr]


# One kernel body serves CPU and CUDA: the device-specific choice is made by `choose`.
@torch.library.custom_op("edgerain::mgca_window_attention", mutates_args=(), device_types=("cpu", "cuda"))
def mgca_window_attention_op(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, window: int, shift: int, backend: str
) -> Tensor:
    return _run("mgca_window_attention", backend, (q, k, v, mask, window, shift))


@mgca_window_attention_op.register_fake
def _mgca_fake(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, window: int, shift: int, backend: str) -> Tensor:
    return torch.empty(q.shape, dtype=q.dtype, device=q.device)


def _mgca_setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    q, k, v, mask, window, shift, _ = inputs
    ctx.save_for_backward(q, k, v, mask)
    ctx.window, ctx.shift = window, shift


def _mgca_backward(ctx, grad: Tensor):  # type: ignore[no-untyped-def]
    inputs = ctx.saved_tensors
    grads = _reference_vjp("mgca_window_attention", inputs, (ctx.window, ctx.shift), grad, ctx.needs_input_grad)
    return (*grads, None, None, None)


@torch.library.custom_op("edgerain::updw", mutates_args=(), device_types=("cpu", "cuda"))
def updw_op(
    x: Tensor,
    dw_weight: Tensor,
    dw_bias: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    pw_weight: Tensor,
    pw_bias: Tensor,
    backend: str,
) -> Tensor:
    return _run("updw", backend, (x, dw_weight, dw_bias, ln_weight, ln_bias, pw_weight, pw_bias))


@updw_op.register_fake
def _updw_fake(
    x: Tensor,
    dw_weight: Tensor,
    dw_bias: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    pw_weight: Tensor,
    pw_bias: Tensor,
    backend: str,
) -> Tensor:
    B, _, h, w = x.shape
    return x.new_empty((B, pw_weight.shape[0], 2 * h, 2 * w))


def _updw_setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    ctx.save_for_backward(*inputs[:7])


def _updw_backward(ctx, grad: Tensor):  # type: ignore[no-untyped-def]
    grads = _reference_vjp("updw", ctx.saved_tensors, (), grad, ctx.needs_input_grad)
    return (*grads, None)


def _reference_vjp(
    op: str, tensors: tuple[Tensor, ...], params: tuple, grad: Tensor, needs: tuple[bool, ...]
) -> list[Tensor | None]:
    """Gradients of the reference at the saved inputs (the fused kernels have no backward of their own)."""
    leaves = [t.detach().requires_grad_(bool(n)) for t, n in zip(tensors, needs, strict=False)]
    with torch.enable_grad():
        out = run_reference(op, (*leaves, *params))
        wanted = [t for t in leaves if t.requires_grad]
        found = iter(torch.autograd.grad(out, wanted, grad, allow_unused=True)) if wanted else iter(())
    return [next(found) if t.requires_grad else None for t in leaves]


mgca_window_attention_op.register_autograd(_mgca_backward, setup_context=_mgca_setup)
updw_op.register_autograd(_updw_backward, setup_context=_updw_setup)


OP_BY_NAME = {"mgca_window_attention": mgca_window_attention_op, "updw": updw_op}
