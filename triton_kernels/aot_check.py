"""Compile the Triton kernels for a GPU architecture without a GPU, and report registers and spills.

The interpreter (``TRITON_INTERPRET=1``) accepts code the GPU compiler rejects (non-constexpr
globals, ``tl.dot`` blocks below 16, ...), so CI also compiles every kernel, with the tile
configuration its launcher would pick, for sm_90 (Hopper) and sm_87 (Orin), and ptxas reports the
register use and spills of each::

    python -m edgerain.triton_kernels.aot_check            # sm_90 and sm_87, fp16 and fp32
    python -m edgerain.triton_kernels.aot_check --arch 90 --dtype fp16

Must run without ``TRITON_INTERPRET=1`` (it needs the compiled kernel objects).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import unittest.mock
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from edgerain.triton_kernels import config as tile_config
from edgerain.triton_kernels.config import pad_block

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
# Decoder shapes of the CLIP-RPN expert (head dim 32, window 8; UpDW 256->128, 128->64 and 64->32,
# single pass) and a wide one that takes the chunked kernel (FCLIP-UNet's CLIP-RN50 features).
MGCA_SHAPES = ((8, 32),)
UPDW_SHAPES = ((256, 128), (128, 64), (64, 32), (1024, 256))


@dataclasses.dataclass
class Report:
    kernel: str
    arch: int
    dtype: str
    params: dict
    registers: int
    spill_bytes: int


def _signature(fn, ptr_dtype: str, constexprs: dict) -> dict[str, str]:  # type: ignore[no-untyped-def]
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name == "fold_ptr":  # updw's folded taps are fp32 whatever the activations
            sig[name] = "*fp32"
        elif name.endswith("_ptr"):
            sig[name] = f"*{ptr_dtype}"
        elif name in ("scale", "eps"):
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


def _ptxas() -> str:
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    return str(bundled) if bundled.exists() else "ptxas"


def compile_kernel(fn, arch: int, dtype: str, constexprs: dict, num_warps: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Compile for sm_<arch>; return (registers, spill bytes) from ptxas."""
    if not isinstance(fn, triton.runtime.jit.JITFunction):
        raise RuntimeError("kernels are decorated for the interpreter: run without TRITON_INTERPRET=1")
    src = ASTSource(fn, _signature(fn, dtype, constexprs), constexprs)
    kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
    ptx = kernel.asm["ptx"]
    target = re.search(r"^\.target\s+(\S+)", ptx, re.M)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.ptx"
        path.write_text(ptx)
        res = subprocess.run(
            [_ptxas(), f"-arch={target.group(1) if target else f'sm_{arch}'}", "-v", str(path), "-o", os.devnull],
            capture_output=True,
            text=True,
            check=True,
        )
    regs = re.search(r"Used (\d+) registers", res.stderr)
    spills = [int(v) for v in re.findall(r"(\d+) bytes spill (?:stores|loads)", res.stderr)]
    return (int(regs.group(1)) if regs else -1), sum(spills)


def check(
    archs: tuple[int, ...] = (90, 87),
    dtypes: tuple[str, ...] = ("fp16", "fp32"),
    ops: tuple[str, ...] = ("mgca", "updw"),
) -> list[Report]:
    from edgerain.triton_kernels.mgca import _mgca_fwd_kernel
    from edgerain.triton_kernels.updw import _updw_fwd_kernel, _updw_fwd_single_pass_kernel

    reports = []
    for arch in archs:
        capability = (arch // 10, arch % 10)
        with unittest.mock.patch.object(tile_config, "device_arch", return_value=capability):
            cuda = torch.device("cuda")
            for dtype in dtypes:
                precision = tile_config.dot_precision(TORCH_DTYPES[dtype], allow_tf32=False)
                for window, head_dim in MGCA_SHAPES if "mgca" in ops else ():
                    cfg = tile_config.mgca_config(cuda, window, head_dim, TORCH_DTYPES[dtype])
                    params = dict(
                        WINDOW=window,
                        BLOCK_P=pad_block(window * window),
                        BLOCK_D=pad_block(head_dim),
                        PRECISION=precision,
                        UPCAST=False,
                    )
                    regs, spills = compile_kernel(_mgca_fwd_kernel, arch, dtype, params, cfg.num_warps)
                    reports.append(Report("mgca", arch, dtype, params, regs, spills))
                for cin, cout in UPDW_SHAPES if "updw" in ops else ():
                    cfg = tile_config.updw_config(cuda, cin, cout)
                    params = dict(
                        BLOCK_M=cfg.block_m, BLOCK_K=cfg.block_k, BLOCK_N=cfg.block_n, PRECISION=precision, UPCAST=False
                    )
                    kernel = _updw_fwd_single_pass_kernel if cfg.single_pass else _updw_fwd_kernel
                    regs, spills = compile_kernel(kernel, arch, dtype, params, cfg.num_warps)
                    kind = "1-pass" if cfg.single_pass else "chunked"
                    reports.append(Report(f"updw {cin}->{cout} {kind}", arch, dtype, params, regs, spills))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, nargs="+", default=[90, 87])
    parser.add_argument("--dtype", nargs="+", default=["fp16", "fp32"], choices=sorted(TORCH_DTYPES))
    parser.add_argument("--ops", nargs="+", default=["mgca", "updw"], choices=["mgca", "updw"])
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("error: unset TRITON_INTERPRET to compile the kernels", file=sys.stderr)
        return 2
    for r in check(tuple(args.arch), tuple(args.dtype), tuple(args.ops)):
        print(
            f"sm_{r.arch} {r.dtype:5s} {r.kernel:24s} registers {r.registers:3d}  spills {r.spill_bytes:5d} B  {r.params}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
