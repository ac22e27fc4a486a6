"""Tile configurations per GPU architecture, and the small helpers the launchers share.

The numbers are starting points chosen from the kernels' register and shared-memory footprints,
not tuned on hardware yet: bench/kernels.py measures them (see docs/kernels.md). sm_90 (H100/H200)
has 228 KB of shared memory per SM and a large register file per SM; sm_87 (Jetson Orin) has
164 KB and only 8-16 SMs, so smaller tiles keep more programs resident there.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import triton
import triton.language as tl


@dataclasses.dataclass(frozen=True)
class TileConfig:
    num_warps: int = 4
    num_stages: int = 1
    block_m: int = 32  # updw: low-resolution pixels per program (each yields 4 output pixels)
    block_n: int = 32  # updw: output channels per GEMM step
    block_k: int = 16  # updw: input channels per chunk (the GEMM's K step)
    # updw: the whole channel row in one chunk (block_k >= Cin), each depthwise sum computed once;
    # otherwise channel chunks of block_k, recomputed for the statistics and each GEMM step.
    single_pass: bool = False


# updw: widest input channel row the single-pass kernel holds in registers.
UPDW_SINGLE_PASS_MAX_CIN = 256


def pad_block(n: int) -> int:
    """Power-of-two block size >= 16: the minimum K (and M, N) of an fp16 ``tl.dot`` on the GPU."""
    return max(16, triton.next_power_of_2(int(n)))


def dot_precision(dtype: torch.dtype, allow_tf32: bool) -> str:
    """IEEE fp32 products for fp32 inputs unless TF32 is asked for; half types use tensor cores anyway."""
    if dtype == torch.float32 and not allow_tf32:
        return "ieee"
    return "tf32"


def upcast_bf16_dot(dtype: torch.dtype) -> bool:
    """Whether to feed bf16 ``tl.dot`` operands as fp32: only under ``TRITON_INTERPRET=1``.

    The interpreter (Triton 3.8) returns garbage for bf16 ``tl.dot`` (numpy has no bf16). A product
    of two bf16 values is exact in fp32, so upcasting the operands and accumulating in IEEE fp32 is
    what the tensor cores compute, up to the summation order.
    """
    return dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1"


def device_arch(device: torch.device) -> tuple[int, int]:
    if device.type != "cuda":
        return (0, 0)  # the interpreter (CPU tensors)
    return torch.cuda.get_device_capability(device)


def mgca_config(device: torch.device, window: int, head_dim: int, dtype: torch.dtype = torch.float16) -> TileConfig:
    block_p = pad_block(window * window)
    block_d = pad_block(head_dim)
    # The logits tile is block_p^2 fp32 values plus q, k, v tiles of block_p x block_d. Checked with
    # ptxas (window 8, head dim 32): fp16 with 4 warps uses 92 (sm_90) / 120 (sm_87) registers and
    # no spills; fp32 operands need 8 warps to avoid spilling. The same rule serves sm_90 and sm_87
    # (both have 64K registers per SM; one 4-warp program per window keeps Orin's few SMs busy).
    tile = block_p * max(block_p, block_d)
    wide = dtype == torch.float32 or tile > 64 * 64
    return TileConfig(num_warps=8 if wide else 4, num_stages=1)


def updw_config(device: torch.device, cin: int, cout: int) -> TileConfig:
    major, minor = device_arch(device)
    if cin <= UPDW_SINGLE_PASS_MAX_CIN:
        # Four phase sums of block_m x pad(Cin) fp32 live at once, and Triton issues the nine
        # neighbour loads early. ptxas (sm_90, fp16, 8 warps): 200 registers and no spills up to
        # Cin 128; Cin 256 spills ~600 bytes at the smallest tile tl.dot allows (16 pixels).
        # fp32 activations spill 1.4-2 KB from Cin 128 on (the decoder runs fp16 on a GPU).
        block_k = pad_block(cin)
        block_m = 32 if block_k <= 64 else 16
        block_n = min(pad_block(cout), 64 if block_k <= 128 else 32)
        return TileConfig(num_warps=8, block_m=block_m, block_n=block_n, block_k=block_k, single_pass=True)
    # Chunked kernel: registers do not grow with Cin (channel chunks of block_k). Checked with
    # ptxas (fp16, these tiles, 8 warps): no spills on sm_87 with block_n 32, a few bytes on sm_90
    # with block_n 64; 4 warps or 64-pixel tiles spill heavily. Each further block_n step over Cout
    # recomputes the depthwise chunks, so block_n covers Cout where the registers allow.
    if major == 0:
        # Interpreter: few programs (each costs ~0.1 s whatever its size).
        return TileConfig(num_warps=4, block_m=32, block_n=pad_block(cout), block_k=16)
    if (major, minor) == (8, 7):
        return TileConfig(num_warps=8, block_m=32, block_n=min(pad_block(cout), 32), block_k=16)
    return TileConfig(num_warps=8, block_m=32, block_n=min(pad_block(cout), 64), block_k=16)


@triton.jit
def dot_f32acc(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """``a @ b`` accumulated in fp32 (operands upcast under the interpreter, see upcast_bf16_dot)."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision=PRECISION, out_dtype=tl.float32)
