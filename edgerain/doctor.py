"""``edgerain doctor``: what is installed, what is missing, and what each missing piece disables."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import platform
import shutil
import subprocess
import sys

from edgerain import ort_cpu


@dataclasses.dataclass
class Check:
    component: str
    ok: bool
    detail: str
    disables: str = ""  # what does not work while this is missing


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check_torch() -> list[Check]:
    import torch

    checks = [Check("torch", True, f"{torch.__version__} (CUDA build {torch.version.cuda or 'none'})")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("CUDA device", True, names))
    else:
        checks.append(
            Check(
                "CUDA device",
                False,
                "no GPU visible to torch",
                "GPU inference, CUDA/Triton kernels, GPU benchmarks and mixed-precision training",
            )
        )
    return checks


def _check_triton() -> Check:
    v = _version("triton")
    if v is None:
        return Check("Triton", False, "not installed", "the Triton kernel backend")
    try:
        from triton.runtime import driver

        driver.active  # noqa: B018 - raises when no GPU driver is present
        return Check("Triton", True, f"{v}, GPU driver active")
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check(
            "Triton",
            False,
            f"{v} installed, no active GPU driver ({first}); TRITON_INTERPRET=1 runs kernels on the CPU for tests",
            "the Triton kernel backend on this machine",
        )


def _check_ort() -> Check:
    v = _version("onnxruntime") or _version("onnxruntime-gpu")
    if v is None:
        return Check("ONNX Runtime", False, "not installed", "export parity checks, verify and the ort backend")
    import onnxruntime as ort

    providers = ", ".join(ort.get_available_providers())
    return Check("ONNX Runtime", True, f"{v}, providers: {providers}; {ort_cpu.describe()}")


def _check_module(component: str, dist: str, module: str, disables: str) -> Check:
    v = _version(dist)
    if v is None:
        return Check(component, False, "not installed", disables)
    try:
        importlib.import_module(module)
    except Exception as exc:
        return Check(component, False, f"{v} installed but fails to import: {str(exc).splitlines()[0]}", disables)
    return Check(component, True, v)


def _check_nvcc() -> Check:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return Check("nvcc", False, "not on PATH", "compiling the CUDA kernels of the C++ extension")
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False).stdout
    release = next((line.strip() for line in out.splitlines() if "release" in line), out.strip()[-60:])
    return Check("nvcc", True, f"{nvcc}: {release}")


def _check_extension() -> Check:
    try:
        ext = importlib.import_module("edgerain._C")
    except ImportError as exc:
        return Check(
            "C++ extension (edgerain._C)",
            False,
            f"not built ({exc}); run `make install` (or pip install --no-build-isolation -e .)",
            "the C++ CPU and CUDA kernel backends",
        )
    cuda = getattr(ext, "cuda_compiled", None)
    cuda_text = "" if cuda is None else (", CUDA kernels compiled" if cuda() else ", CPU only (built without nvcc)")
    return Check("C++ extension (edgerain._C)", True, f"{ext.__file__}{cuda_text}")


def _check_ops_backends() -> list[Check]:
    try:
        from edgerain.ops import backend_report  # type: ignore[attr-defined]
    except ImportError:
        return []
    return [
        Check(f"op {op} / {backend}", available, reason, "" if available else f"the {backend} backend of {op}")
        for op, backend, available, reason in backend_report()
    ]


def run_checks() -> list[Check]:
    checks = [Check("Python", True, f"{sys.version.split()[0]} on {platform.machine()} {platform.system()}")]
    checks += _check_torch()
    checks.append(_check_triton())
    checks.append(_check_ort())
    checks.append(
        _check_module("open_clip", "open_clip_torch", "open_clip", "every network (all four use CLIP or its loader)")
    )
    checks.append(
        _check_module(
            "ModelOpt",
            "nvidia-modelopt",
            "modelopt.torch.quantization",
            "INT8 quantization (`edgerain quantize`, `export --precision int8`)",
        )
    )
    checks.append(
        _check_module(
            "TensorRT",
            "tensorrt",
            "tensorrt",
            "building/running engines from Python (bundles still carry build_engine.sh for trtexec on the device)",
        )
    )
    checks.append(_check_nvcc())
    checks.append(_check_extension())
    checks += _check_ops_backends()
    return checks
