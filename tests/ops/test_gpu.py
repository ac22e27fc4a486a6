"""GPU parity and integration of the compiled kernels (Triton and CUDA). Skipped without a GPU.

Run on a GPU machine by bench/gpu_check.sh: ``EDGERAIN_GPU_TESTS=1 pytest -m gpu tests/ops``.
"""

from __future__ import annotations

import pytest
import torch
from ops_helpers import TOLERANCE, mgca_inputs, mgca_truth, rel_error, updw_inputs, updw_truth

from edgerain import ops

pytestmark = pytest.mark.gpu

BACKENDS = ["triton", "extension"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

MGCA_SHAPES = [
    # B, heads, d, H, W, window, shift
    (1, 1, 32, 64, 64, 8, 0),  # decoder level 0 of a 64x64 crop
    (2, 4, 32, 37, 53, 8, 4),  # partial windows, shifted, batch 2
    (1, 3, 5, 15, 22, 7, 3),  # window 7, head dim 5
    (1, 1, 16, 1, 1, 8, 0),
]
UPDW_SHAPES = [
    # B, Cin, Cout, h, w
    (1, 256, 128, 16, 16),  # the bottleneck -> level 2 UpDWBlock
    (2, 64, 32, 13, 21),
    (1, 33, 17, 1, 1),
    (1, 5, 7, 9, 2),
    (1, 300, 24, 7, 11),  # Cin past the single-pass limit: the chunked Triton kernel
]


def _cuda(args):  # type: ignore[no-untyped-def]
    return tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in args)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MGCA_SHAPES)
def test_mgca_gpu_matches_float64_reference(cuda_device, backend, dtype, shape):
    B, heads, d, H, W, window, shift = shape
    q, k, v, mask = mgca_inputs(B, heads, d, H, W, dtype, seed=H + W)
    truth = mgca_truth(q, k, v, mask, window, shift)
    args = _cuda((q, k, v, mask))
    if backend == "triton":
        from edgerain.triton_kernels.mgca import mgca_window_attention

        out = torch.full(q.shape, float("nan"), dtype=dtype, device=cuda_device)
        mgca_window_attention(*args, window, shift, out=out)
    else:
        import edgerain._C as ext

        out = torch.full(q.shape, float("nan"), dtype=dtype, device=cuda_device)
        ext.mgca_forward(*args, window, shift, out=out)
    assert rel_error(out.cpu(), truth) < TOLERANCE[dtype]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", UPDW_SHAPES)
def test_updw_gpu_matches_float64_reference(cuda_device, backend, dtype, shape):
    B, cin, cout, h, w = shape
    args = updw_inputs(B, cin, cout, h, w, dtype, seed=cin + h)
    truth = updw_truth(*args)
    out = torch.full((B, cout, 2 * h, 2 * w), float("nan"), dtype=dtype, device=cuda_device)
    if backend == "triton":
        from edgerain.triton_kernels.updw import updw

        updw(*_cuda(args), out=out)
    else:
        import edgerain._C as ext

        ext.updw_forward(*_cuda(args), out=out)
    assert rel_error(out.cpu(), truth) < TOLERANCE[dtype]


def test_auto_prefers_triton_on_cuda(cuda_device):
    args = _cuda((*mgca_inputs(1, 1, 8, 9, 9, torch.float16, seed=0), 8, 0))
    name, skipped = ops.choose("mgca_window_attention", args, backend="auto")
    assert name == "triton", skipped


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_sees_one_node_without_graph_breaks(cuda_device, backend):
    q, k, v, mask = _cuda(mgca_inputs(1, 2, 16, 24, 24, torch.float16, seed=1))

    def attend(q, k, v, mask):  # type: ignore[no-untyped-def]
        return ops.mgca_window_attention(q, k, v, mask, 8, 4, backend=backend) * 2

    compiled = torch.compile(attend, fullgraph=True)
    expected = attend(q, k, v, mask)
    torch.testing.assert_close(compiled(q, k, v, mask), expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_graph_replay(cuda_device, backend):
    args = _cuda(updw_inputs(1, 64, 32, 16, 16, torch.float16, seed=2))
    expected = ops.updw(*args, backend=backend)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        ops.updw(*args, backend=backend)  # warm-up outside capture (Triton compiles here)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = ops.updw(*args, backend=backend)
    captured.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, expected)


def test_model_with_fused_cuda_ops_gives_reference_output(cuda_device, tiny_model_factory, monkeypatch):
    pytest.importorskip("open_clip", reason="the tiny model's CLIP router needs open_clip")
    model = tiny_model_factory("clip-rpn-tiny", 0).eval().to(cuda_device)
    x = torch.rand(1, 3, 72, 96, generator=torch.Generator().manual_seed(0)).to(cuda_device)
    with torch.no_grad():
        monkeypatch.setenv(ops.ENV_VAR, "reference")
        ref = model(x)
        for backend in BACKENDS:
            monkeypatch.setenv(ops.ENV_VAR, backend)
            assert rel_error(model(x).cpu(), ref.cpu().double()) < 1e-4, backend
