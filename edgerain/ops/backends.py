"""The implementations behind each fused op, and what each one can serve.

Three backends compute the same functions:

* ``extension``: the compiled extension ``edgerain._C`` (csrc/): CUDA kernels on CUDA tensors, plain
  C++ on CPU tensors (forced only; ``auto`` never picks it for CPU tensors).
* ``triton``: the Triton kernels (triton_kernels/): CUDA tensors, or CPU tensors under
  ``TRITON_INTERPRET=1`` (tests only).
* ``reference``: the PyTorch reference (always available; what ONNX export traces).

Each backend answers ``available()`` (can it run here at all) and ``supports(op, args)`` (can it run
this input), both as ``(bool, reason)`` so the dispatcher can say why it skipped one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

OPS = ("mgca_window_attention", "updw")
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

Verdict = tuple[bool, str]


def _tensors(args: Sequence[Any]) -> list[Tensor]:
    return [a for a in args if isinstance(a, Tensor)]


def _dtype_verdict(tensors: list[Tensor], allowed: Sequence[torch.dtype]) -> Verdict:
    bad = sorted({str(t.dtype) for t in tensors if t.dtype not in allowed})
    if bad:
        return False, f"dtype {', '.join(bad)} not supported (takes {', '.join(str(d) for d in allowed)})"
    return True, ""


def _device_verdict(tensors: list[Tensor]) -> Verdict:
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        return False, f"inputs on several devices ({', '.join(sorted(map(str, devices)))})"
    return True, ""


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _cuda_code_runs_on(built_archs: list[str], capability: tuple[int, int]) -> bool:
    """SASS for sm_XY runs on sm_XZ with Z >= Y; the newest arch also ships PTX, JIT-compiled for later GPUs."""
    archs = [(int(a[:-1]), int(a[-1])) for a in built_archs]
    if any(major == capability[0] and minor <= capability[1] for major, minor in archs):
        return True
    return bool(archs) and capability >= max(archs)


class ReferenceBackend:
    name = "reference"

    def available(self) -> Verdict:
        return True, "PyTorch reference ops (always available; ONNX export traces these)"

    def supports(self, op: str, args: Sequence[Any]) -> Verdict:
        return True, ""


class ExtensionBackend:
    name = "extension"

    def __init__(self) -> None:
        # Imported on first use and remembered (no functools.cached_property: its lock stops torch.compile).
        self._loaded = False
        self._module: ModuleType | None = None
        self._import_error = ""

    @property
    def module(self) -> ModuleType | None:
        if not self._loaded:
            try:
                self._module = importlib.import_module("edgerain._C")
            except ImportError as exc:
                self._import_error = str(exc)
            self._loaded = True
        return self._module

    def cuda_compiled(self) -> bool:
        return self.module is not None and bool(self.module.cuda_compiled())

    def available(self) -> Verdict:
        if self.module is None:
            return False, (
                "edgerain._C is not built (reinstall with `pip install --no-build-isolation -e .`; "
                f"EDGERAIN_NO_EXT=1 skips it): {self._import_error}"
            )
        if not self.cuda_compiled():
            return True, "C++ CPU kernels only: built without nvcc, so no CUDA kernels"
        archs = self.module.cuda_archs()
        where = "a CUDA device is visible" if torch.cuda.is_available() else "no CUDA device visible"
        return True, f"C++ CPU kernels and CUDA kernels for sm_{archs.replace(';', ', sm_')}; {where}"

    def supports(self, op: str, args: Sequence[Any]) -> Verdict:
        ok, why = self.available()
        if not ok:
            return False, why
        tensors = _tensors(args)
        ok, why = _device_verdict(tensors)
        if not ok:
            return ok, why
        device = tensors[0].device
        if device.type == "cpu":
            return _dtype_verdict(tensors, (*FUSED_DTYPES, torch.float64))
        if device.type != "cuda":
            return False, f"device {device.type} not supported"
        if not self.cuda_compiled():
            return False, "edgerain._C was built without CUDA (no nvcc at build time)"
        ok, why = _dtype_verdict(tensors[:1], FUSED_DTYPES)
        if not ok:
            return ok, why
        assert self.module is not None
        capability = torch.cuda.get_device_capability(device)
        built = [a for a in self.module.cuda_archs().split(";") if a]
        if not _cuda_code_runs_on(built, capability):
            return False, (
                f"edgerain._C has no code for sm_{capability[0]}{capability[1]} (built for sm_{', sm_'.join(built)}; "
                "rebuild with EDGERAIN_CUDA_ARCHS)"
            )
        props = torch.cuda.get_device_properties(device)
        limit = int(getattr(props, "shared_memory_per_block_optin", props.shared_memory_per_block))
        if op == "mgca_window_attention":
            window, head_dim = int(args[4]), int(tensors[0].shape[2])
            if window * window > 1024:
                return False, f"window {window} has more than 1024 pixels (one CUDA thread per query)"
            need = int(self.module.mgca_cuda_smem_bytes(window, head_dim))
        else:
            need = int(self.module.updw_cuda_smem_bytes(tensors[0].shape[1], args[5].shape[0]))
        if need > limit:
            return False, f"needs {need} bytes of shared memory per block, the device allows {limit}"
        return True, ""

    def run(self, op: str, args: Sequence[Any]) -> Tensor:
        assert self.module is not None
        if op == "mgca_window_attention":
            return self.module.mgca_forward(*args)
        return self.module.updw_forward(*args)


class TritonBackend:
    name = "triton"
    max_window_pixels = 256  # a 256 x 256 fp32 logits tile is the most one program holds
    max_head_dim = 256

    def __init__(self) -> None:
        self._version: str | None = None
        self._looked = False

    @property
    def triton_version(self) -> str | None:
        if not self._looked:
            try:
                import triton

                self._version = str(triton.__version__)
            except ImportError:
                self._version = None
            self._looked = True
        return self._version

    def available(self) -> Verdict:
        if self.triton_version is None:
            return False, "triton is not installed (pip install 'edgerain[triton]')"
        if torch.cuda.is_available():
            return True, f"triton {self.triton_version} on CUDA"
        if interpreting():
            return True, f"triton {self.triton_version} interpreter on the CPU (TRITON_INTERPRET=1; slow, for tests)"
        return False, f"triton {self.triton_version} needs a CUDA device (or TRITON_INTERPRET=1 for CPU tests)"

    def supports(self, op: str, args: Sequence[Any]) -> Verdict:
        ok, why = self.available()
        if not ok:
            return False, why
        tensors = _tensors(args)
        ok, why = _device_verdict(tensors)
        if not ok:
            return ok, why
        device = tensors[0].device
        if device.type == "cpu" and not interpreting():
            return False, "CPU tensors need TRITON_INTERPRET=1 (the Triton interpreter)"
        if device.type not in ("cpu", "cuda"):
            return False, f"device {device.type} not supported"
        ok, why = _dtype_verdict(tensors, FUSED_DTYPES)
        if not ok:
            return ok, why
        if op == "mgca_window_attention":
            window, head_dim = int(args[4]), int(tensors[0].shape[2])
            if window * window > self.max_window_pixels:
                return False, f"window {window} exceeds {self.max_window_pixels} pixels per program"
            if head_dim > self.max_head_dim:
                return False, f"head dim {head_dim} exceeds {self.max_head_dim}"
        return True, ""

    def run(self, op: str, args: Sequence[Any]) -> Tensor:
        if op == "mgca_window_attention":
            from edgerain.triton_kernels.mgca import mgca_window_attention

            return mgca_window_attention(*args)
        from edgerain.triton_kernels.updw import updw

        return updw(*args)


REFERENCE = ReferenceBackend()
EXTENSION = ExtensionBackend()
TRITON = TritonBackend()
# The order `auto` tries them in. Triton first: on an H100 (bench/results/kernels-*.json) its MGCA
# kernel ran 4.7-8.5x eager against the extension's 1.1-1.6x, and its UpDW kernel beat the
# extension's at every decoder shape. The extension serves where Triton is absent (e.g. a Jetson
# without a Triton wheel) and on the CPU when forced.
BACKENDS: dict[str, ReferenceBackend | ExtensionBackend | TritonBackend] = {
    "triton": TRITON,
    "extension": EXTENSION,
    "reference": REFERENCE,
}
