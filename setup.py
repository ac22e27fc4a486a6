"""Build script: package layout and the optional C++/CUDA extension (edgerain._C).

The top-level folders ``triton_kernels/`` and ``quant/`` install as ``edgerain.triton_kernels`` and
``edgerain.quant`` so that no import path clashes with other distributions (PyPI has a
``triton_kernels`` of its own).
"""

from __future__ import annotations

from setuptools import find_packages, setup

PACKAGE_DIR = {
    "edgerain": "edgerain",
    "edgerain.triton_kernels": "triton_kernels",
    "edgerain.quant": "quant",
}


def packages() -> list[str]:
    found = ["edgerain", *(f"edgerain.{p}" for p in find_packages("edgerain"))]
    for name, folder in PACKAGE_DIR.items():
        if name != "edgerain":
            found += [name, *(f"{name}.{p}" for p in find_packages(folder))]
    return found


def ext_modules_and_cmdclass() -> tuple[list, dict]:
    # Filled in by the kernels work: the pybind11 extension from csrc/.
    return [], {}


ext_modules, cmdclass = ext_modules_and_cmdclass()

setup(packages=packages(), package_dir=PACKAGE_DIR, ext_modules=ext_modules, cmdclass=cmdclass)
