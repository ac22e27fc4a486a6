"""Triton kernels on the CPU under TRITON_INTERPRET=1 against the float64 reference.

Each launch runs about 20 programs or fewer (the interpreter costs ~0.1 s per program).
"""

from __future__ import annotations

import os

import pytest
import torch
from ops_helpers import TOLERANCE, mgca_inputs, mgca_truth, poisoned, rel_error, updw_inputs, updw_truth

from edgerain.triton_kernels import mgca as triton_mgca
from edgerain.triton_kernels import updw as triton_updw
from edgerain.triton_kernels.config import TileConfig, pad_block

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1 (set by tests/ops/conftest.py)"
)

MGCA_CASES = [
    # B, heads, d, H, W, window, shift, dtype
    (1, 1, 8, 13, 20, 8, 4, torch.float32),  # H, W not multiples of the window; shifted
    (2, 1, 5, 5, 7, 7, 3, torch.float32),  # batch > 1, window 7, head dim 5 (not a power of two)
    (1, 1, 4, 1, 1, 8, 0, torch.float32),  # a single pixel
    (1, 2, 16, 9, 10, 8, 0, torch.float16),  # two heads, partial windows
    (1, 1, 3, 11, 6, 7, 3, torch.bfloat16),
    (1, 1, 16, 8, 8, 4, 2, torch.float16),  # exactly one tile per window, shifted
]


@pytest.mark.parametrize("B,heads,d,H,W,window,shift,dtype", MGCA_CASES)
def test_mgca_matches_float64_reference(B, heads, d, H, W, window, shift, dtype):
    assert triton_mgca.program_count((B, heads, d, H, W), window, shift) <= 24
    q, k, v, mask = mgca_inputs(B, heads, d, H, W, dtype, seed=H * 100 + W)
    out = poisoned(q.shape, dtype)
    triton_mgca.mgca_window_attention(q, k, v, mask, window, shift, out=out)
    assert rel_error(out, mgca_truth(q, k, v, mask, window, shift)) < TOLERANCE[dtype]


def test_mgca_reads_strided_views():
    # The models hand over q, k, v as views of one qkv tensor (no contiguous copies).
    B, heads, d, H, W = 1, 2, 6, 7, 9
    qkv = torch.randn(B, 3 * heads * d, H, W, dtype=torch.float32)
    q, k, v = qkv.view(B, 3, heads, d, H, W).unbind(1)
    mask = torch.rand(B, 1, H, W)
    out = triton_mgca.mgca_window_attention(q, k, v, mask, 8, 4)
    assert rel_error(out, mgca_truth(q, k, v, mask, 8, 4)) < TOLERANCE[torch.float32]


UPDW_CASES = [
    # B, Cin, Cout, h, w, dtype
    (1, 5, 7, 5, 7, torch.float32),  # odd channels, odd sizes: every border case of the ring
    (2, 3, 4, 1, 1, torch.float32),  # 1x1 input: first and last row/column at once; batch 2
    (1, 16, 24, 4, 9, torch.float16),
    (1, 6, 5, 3, 2, torch.bfloat16),
    (1, 33, 17, 2, 3, torch.float32),  # channels past a power of two (padded block)
]


@pytest.mark.parametrize("B,cin,cout,h,w,dtype", UPDW_CASES)
def test_updw_matches_float64_reference(B, cin, cout, h, w, dtype):
    assert triton_updw.program_count((B, cin, h, w)) <= 20
    args = updw_inputs(B, cin, cout, h, w, dtype, seed=cin * 10 + h)
    out = poisoned((B, cout, 2 * h, 2 * w), dtype)
    triton_updw.updw(*args, out=out)
    assert rel_error(out, updw_truth(*args)) < TOLERANCE[dtype]


def test_updw_several_tiles_and_gemm_steps():
    # Small tiles and output-channel steps: pixels split over programs, Cout over GEMM iterations,
    # Cin over channel chunks.
    args = updw_inputs(1, 19, 20, 5, 4, torch.float32, seed=7)
    out = poisoned((1, 20, 10, 8), torch.float32)
    triton_updw.updw(*args, out=out, config=TileConfig(block_m=16, block_n=16, block_k=16))
    assert rel_error(out, updw_truth(*args)) < TOLERANCE[torch.float32]


def test_updw_single_pass_several_tiles_and_output_steps():
    # The single-pass kernel (whole channel row in registers) over several pixel tiles and several
    # output-channel steps, every ring pixel included.
    args = updw_inputs(1, 19, 40, 5, 7, torch.float32, seed=11)
    out = poisoned((1, 40, 10, 14), torch.float32)
    cfg = TileConfig(block_m=16, block_n=16, block_k=32, single_pass=True)
    triton_updw.updw(*args, out=out, config=cfg)
    assert rel_error(out, updw_truth(*args)) < TOLERANCE[torch.float32]
    with pytest.raises(ValueError, match="block_k >= Cin"):
        triton_updw.updw(*args, config=TileConfig(block_m=16, block_n=16, block_k=16, single_pass=True))


def test_updw_config_takes_the_single_pass_kernel_up_to_its_channel_limit():
    from edgerain.triton_kernels.config import UPDW_SINGLE_PASS_MAX_CIN, updw_config

    cpu = torch.device("cpu")
    wide = updw_config(cpu, UPDW_SINGLE_PASS_MAX_CIN, 128)
    assert wide.single_pass and wide.block_k >= UPDW_SINGLE_PASS_MAX_CIN
    assert not updw_config(cpu, UPDW_SINGLE_PASS_MAX_CIN + 1, 128).single_pass


def test_folded_taps_reproduce_the_interior_stencil():
    # Interior weights of phase (0, 0): bilinear x2 then the 3x3 taps, folded onto x's 3x3
    # neighbourhood, must equal the upsample-then-convolve result at an interior pixel.
    torch.manual_seed(0)
    cin = 3
    dw = torch.randn(cin, 1, 3, 3)
    x = torch.randn(1, cin, 5, 5)
    up = torch.nn.functional.interpolate(x.double(), scale_factor=2.0, mode="bilinear", align_corners=False)
    conv = torch.nn.functional.conv2d(up, dw.double(), padding=1, groups=cin)
    fold = triton_updw.fold_taps(dw).double()  # (kinds, phases, offsets, Cin)
    i, j = 2, 2
    for pa in range(2):
        for pb in range(2):
            neighbourhood = x[0, :, i - 1 : i + 2, j - 1 : j + 2].reshape(cin, 9).double()
            folded = (fold[0, 2 * pa + pb].t() * neighbourhood).sum(1)
            torch.testing.assert_close(folded, conv[0, :, 2 * i + pa, 2 * j + pb])


def test_block_sizes_are_padded_for_tensor_cores():
    assert pad_block(1) == 16 and pad_block(5) == 16 and pad_block(49) == 64 and pad_block(64) == 64
