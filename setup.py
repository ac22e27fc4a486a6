"""Build script: package layout and the optional C++/CUDA extension (edgerain._C).

The top-level folders ``triton_kernels/``, ``quant/`` and ``targets/`` install as
``edgerain.triton_kernels``, ``edgerain.quant`` and ``edgerain.builtin_targets`` so that no import
path clashes with other distributions (PyPI has a ``triton_kernels`` of its own) and the built-in
target profiles travel inside wheels, not only in a checkout.
"""

from __future__ import annotations

import glob
import os
import shutil

from setuptools import find_packages, setup

PACKAGE_DIR = {
    "edgerain": "edgerain",
    "edgerain.triton_kernels": "triton_kernels",
    "edgerain.quant": "quant",
    "edgerain.builtin_targets": "targets",
}


def packages() -> list[str]:
    found = ["edgerain", *(f"edgerain.{p}" for p in find_packages("edgerain"))]
    for name, folder in PACKAGE_DIR.items():
        if name != "edgerain":
            found += [name, *(f"{name}.{p}" for p in find_packages(folder))]
    return found


def _cuda_home() -> str | None:
    """The CUDA toolkit to build with: $CUDA_HOME / $CUDA_PATH, else the toolkit of `nvcc` on PATH.

    `nvcc` on PATH may be a wrapper script outside the toolkit, so a candidate counts only when it
    holds both bin/nvcc and include/cuda_runtime_api.h.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        candidates += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    for home in candidates:
        if home and all(os.path.exists(os.path.join(home, f)) for f in ("bin/nvcc", "include/cuda_runtime_api.h")):
            return home
    return None


def ext_modules_and_cmdclass() -> tuple[list, dict]:
    """The optional extension edgerain._C from csrc/ (csrc/runtime/ is a separate CMake project).

    EDGERAIN_NO_EXT=1 skips it; without nvcc it is built CPU-only (the C++ kernels); with nvcc the
    CUDA kernels are compiled for EDGERAIN_CUDA_ARCHS (default "87;90": Jetson Orin and Hopper).
    The package works without the extension (the dispatcher falls back and says why).
    """
    if os.environ.get("EDGERAIN_NO_EXT") == "1":
        print("edgerain: EDGERAIN_NO_EXT=1, not building the edgerain._C extension")
        return [], {}
    try:
        home = _cuda_home()
        if home:
            os.environ["CUDA_HOME"] = home  # torch.utils.cpp_extension reads it at import
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except ImportError as exc:
        print(f"edgerain: torch is not importable ({exc}); not building the edgerain._C extension")
        return [], {}
    csrc = "csrc"
    cxx_flags = ["-O3"]  # the language standard comes from torch (C++20 for its headers)
    if home is None:
        print("edgerain: nvcc not found (set CUDA_HOME); building edgerain._C CPU-only")
        ext = CppExtension("edgerain._C", [f"{csrc}/binding.cpp"], include_dirs=[csrc], extra_compile_args=cxx_flags)
    else:
        archs = [a.strip().replace(".", "") for a in os.environ.get("EDGERAIN_CUDA_ARCHS", "87;90").split(";")]
        archs = [a for a in archs if a]
        # Explicit -gencode flags: torch then adds no architectures of its own. SASS per listed
        # arch plus PTX of the newest one for later GPUs.
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
        gencode.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
        print(f"edgerain: building edgerain._C with CUDA ({home}) for sm_{', sm_'.join(archs)}")
        defines = ["-DEDGERAIN_WITH_CUDA", f'-DEDGERAIN_CUDA_ARCHS="{";".join(archs)}"']
        ext = CUDAExtension(
            "edgerain._C",
            [f"{csrc}/binding.cpp", f"{csrc}/cuda_ops.cu"],
            include_dirs=[csrc],
            extra_compile_args={"cxx": cxx_flags + defines, "nvcc": ["-O3", *gencode]},
        )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)}


ext_modules, cmdclass = ext_modules_and_cmdclass()

setup(packages=packages(), package_dir=PACKAGE_DIR, ext_modules=ext_modules, cmdclass=cmdclass)
