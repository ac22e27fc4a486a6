"""The Triton kernels compile for sm_90 and sm_87 (no GPU needed), with the launchers' tile configs.

The interpreter accepts code the GPU compiler rejects, so this catches what the interpreted parity
tests cannot. It runs in a subprocess because tests/ops/conftest.py switches the interpreter on.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

triton = pytest.importorskip("triton")


def _aot(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run(
        [sys.executable, "-m", "edgerain.triton_kernels.aot_check", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_kernels_compile_for_hopper_and_orin():
    if "nvidia" not in triton.backends.backends:
        pytest.skip("this triton build has no NVIDIA backend")
    out = _aot("--arch", "90", "87", "--dtype", "fp16") + _aot("--arch", "90", "--dtype", "fp32", "--ops", "mgca")
    lines = out.strip().splitlines()
    from edgerain.triton_kernels.aot_check import UPDW_SHAPES

    assert len(lines) == 2 * (1 + len(UPDW_SHAPES)) + 1, out
    # The MGCA kernel's whole working set fits in registers, and so does the single-pass UpDW
    # kernel's up to Cin 128 (the decoder's levels 0 and 1).
    assert all("spills     0 B" in line for line in lines if " mgca " in line), out
    assert all("spills     0 B" in line for line in lines if "updw 64->32 " in line or "updw 128->64 " in line), out
