"""Fixtures for the kernel tests: the Triton interpreter, random inputs and the float64 ground truth.

TRITON_INTERPRET=1 must be set before Triton decorates a kernel (decoration picks interpreter or
compiler), so it is set here, at collection, before any test module imports the kernels; kernel
modules someone imported earlier without it are reloaded. The GPU tests (``-m gpu``, run by
bench/gpu_check.sh with EDGERAIN_GPU_TESTS=1) need the compiled kernels instead, so that variable
leaves the interpreter off.
"""

from __future__ import annotations

import importlib
import os
import sys

# gpu_check.sh sets EDGERAIN_GPU_TESTS=1 and selects `-m gpu`: those tests need compiled kernels.
if os.environ.get("EDGERAIN_GPU_TESTS") != "1":
    os.environ["TRITON_INTERPRET"] = "1"

for _name in ("edgerain.triton_kernels.config", "edgerain.triton_kernels.mgca", "edgerain.triton_kernels.updw"):
    if _name in sys.modules:
        importlib.reload(sys.modules[_name])

import pytest  # noqa: E402


@pytest.fixture
def has_extension():
    try:
        import edgerain._C as ext
    except ImportError as exc:
        pytest.skip(f"edgerain._C is not built ({exc}); build it with `pip install --no-build-isolation -e .`")
    return ext


@pytest.fixture
def cuda_device():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (none visible)")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 is set: run GPU tests with EDGERAIN_GPU_TESTS=1 -m gpu (bench/gpu_check.sh)")
    return torch.device("cuda")
