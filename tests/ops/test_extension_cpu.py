"""The extension's C++ CPU kernels against the float64 reference (the CUDA kernels share the maths)."""

from __future__ import annotations

import pytest
import torch
from ops_helpers import TOLERANCE, mgca_inputs, mgca_truth, poisoned, rel_error, updw_inputs, updw_truth

MGCA_CASES = [
    (1, 1, 8, 13, 20, 8, 4, torch.float64),
    (2, 3, 5, 5, 7, 7, 3, torch.float32),  # batch 2, 3 heads, head dim 5, window 7, shifted
    (1, 1, 4, 1, 1, 8, 0, torch.float32),
    (1, 2, 16, 17, 9, 8, 0, torch.float16),
    (1, 1, 3, 11, 6, 7, 3, torch.bfloat16),
]


@pytest.mark.parametrize("B,heads,d,H,W,window,shift,dtype", MGCA_CASES)
def test_mgca_cpu_matches_float64_reference(has_extension, B, heads, d, H, W, window, shift, dtype):
    q, k, v, mask = mgca_inputs(B, heads, d, H, W, dtype, seed=H * 7 + W)
    out = poisoned(q.shape, dtype)
    has_extension.mgca_forward(q, k, v, mask, window, shift, out=out)
    assert rel_error(out, mgca_truth(q, k, v, mask, window, shift)) < TOLERANCE[dtype]


def test_mgca_cpu_strided_views(has_extension):
    qkv = torch.randn(2, 3 * 2 * 4, 6, 11, dtype=torch.float64)
    q, k, v = qkv.view(2, 3, 2, 4, 6, 11).unbind(1)
    mask = torch.rand(2, 1, 6, 11, dtype=torch.float64)
    out = has_extension.mgca_forward(q, k, v, mask, 8, 4)
    assert rel_error(out, mgca_truth(q, k, v, mask, 8, 4)) < TOLERANCE[torch.float64]


UPDW_CASES = [
    (1, 5, 7, 5, 7, torch.float64),
    (2, 3, 4, 1, 1, torch.float32),
    (1, 33, 17, 2, 3, torch.float32),
    (1, 16, 24, 4, 9, torch.float16),
    (1, 6, 5, 3, 2, torch.bfloat16),
    (3, 1, 1, 2, 1, torch.float64),  # one channel: LayerNorm output is its bias
]


@pytest.mark.parametrize("B,cin,cout,h,w,dtype", UPDW_CASES)
def test_updw_cpu_matches_float64_reference(has_extension, B, cin, cout, h, w, dtype):
    args = updw_inputs(B, cin, cout, h, w, dtype, seed=cin + 100 * w)
    out = poisoned((B, cout, 2 * h, 2 * w), dtype)
    has_extension.updw_forward(*args, out=out)
    assert rel_error(out, updw_truth(*args)) < TOLERANCE[dtype]


def test_bad_shapes_raise(has_extension):
    q, k, v, mask = mgca_inputs(1, 1, 4, 5, 5, torch.float32, seed=0)
    with pytest.raises(RuntimeError, match="shift"):
        has_extension.mgca_forward(q, k, v, mask, 4, 4)
    with pytest.raises(RuntimeError, match="mask"):
        has_extension.mgca_forward(q, k, v, mask[:, :, :3], 4, 0)


def test_cuda_sources_compiled_in(has_extension):
    import shutil

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH here, so the extension was built CPU-only")
    assert has_extension.cuda_compiled(), "nvcc is present but edgerain._C was built without the CUDA kernels"
    assert has_extension.cuda_archs()
