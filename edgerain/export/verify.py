"""``edgerain verify BUNDLE``: is this bundle intact, and does it still compute what was exported?

1. the manifest parses and follows the schema (:func:`edgerain.bundle.validate_manifest`);
2. every file matches its sha256, none is missing, none was added;
3. every TensorRT engine under ``engines/`` has a record that matches this bundle's graphs, its
   target's GPU, TensorRT and JetPack, and (where TensorRT is importable) the local TensorRT;
4. ONNX Runtime reproduces the stored PyTorch reference outputs on the bundled samples within the
   manifest's tolerances; where TensorRT and a GPU are here, so does each engine whose shape
   profile holds a sample.
Any failure raises :class:`edgerain.bundle.BundleError` with one line that says what to do.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgerain import bundle as fmt
from edgerain.export import parity as P
from edgerain.export import tensorrt as T
from edgerain.export.onnx_run import OrtBundle, max_abs, psnr_db


@dataclasses.dataclass
class VerifyReport:
    bundle: Path
    manifest: dict[str, Any]
    files_checked: int
    samples: list[dict[str, Any]]
    engines: list[dict[str, Any]]  # one row per engine: record + how it was checked
    tensorrt_note: str


def _load_sample(root: Path, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from PIL import Image

    try:
        with Image.open(root / entry["input"]) as im:
            img = np.asarray(im.convert("RGB"))
        ref = np.load(root / entry["reference"], allow_pickle=False)
        ctx = np.load(root / entry["context_reference"], allow_pickle=False) if entry.get("context_reference") else None
    except (OSError, ValueError) as exc:
        raise fmt.BundleError(f"cannot read parity sample {entry['input']}: {exc}") from None
    if ref.shape != (1, 3, *img.shape[:2]):
        raise fmt.BundleError(f"reference {entry['reference']} does not match the size of {entry['input']}")
    return img, ref, ctx


def verify_bundle(bundle: str | Path, providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> VerifyReport:
    root = Path(bundle)
    manifest = fmt.read_manifest(root)
    fmt.check_files(root, manifest)
    records = fmt.read_engine_records(root)
    for rec in records:
        T.check_engine_record(rec, manifest, root)

    tol = P.Tolerance(
        atol=float(manifest["parity"]["atol"]),
        min_psnr_db=float(manifest["parity"]["min_psnr_db"]),
        context_atol=float(manifest["parity"].get("context_atol", manifest["parity"]["atol"])),
    )
    runner = OrtBundle(root, manifest, providers)
    rows = []
    loaded = []
    for entry in manifest["parity"]["samples"]:
        img, ref, ctx = _load_sample(root, entry)
        loaded.append((img, ref, ctx, entry))
        row = P.check_sample(runner, img, ref, ctx, entry.get("expert"))
        rows.append(row)
    problems = P.failures(rows, tol)
    if problems:
        raise fmt.BundleError(f"bundle {root} fails parity with ONNX Runtime: {problems[0]}")

    engine_rows: list[dict[str, Any]] = [dict(rec, checked="record") for rec in records]
    version = T.tensorrt_version()
    if not records:
        note = "no TensorRT engines in the bundle (build them on the device with ./build_engine.sh)"
    elif version is None:
        note = "TensorRT is not importable here: engine records checked, engines not run"
    elif T.local_gpu() is None:
        note = f"TensorRT {version} is here but no CUDA GPU: engine records checked, engines not run"
    else:
        engine_rows = [_run_engine_parity(root, manifest, rec, loaded, tol) for rec in records]
        note = f"TensorRT {version}: engines run on the samples that fit their shape profiles"
    return VerifyReport(root, manifest, len(manifest["files"]), rows, engine_rows, note)


# --------------------------------------------------------------------------------------------
# TensorRT parity (needs tensorrt and a CUDA GPU; exercised on the device, not in CI).


def _run_engine(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    import tensorrt as trt  # type: ignore[import-not-found]
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise fmt.BundleError(f"TensorRT cannot load engine {path.name}; rebuild it with ./build_engine.sh --force")
    ctx = engine.create_execution_context()
    keep = {}
    for name, arr in inputs.items():
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).cuda()
        ctx.set_input_shape(name, tuple(arr.shape))
        ctx.set_tensor_address(name, t.data_ptr())
        keep[name] = t
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    out_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    out = torch.empty(tuple(ctx.get_tensor_shape(out_name)), dtype=torch.float32, device="cuda")
    ctx.set_tensor_address(out_name, out.data_ptr())
    stream = torch.cuda.current_stream()
    if not ctx.execute_async_v3(stream.cuda_stream):
        raise fmt.BundleError(f"TensorRT failed to run engine {path.name}")
    stream.synchronize()
    return out.cpu().numpy()


def _fits(shape: list[int], profile: dict[str, Any]) -> bool:
    return all(profile["min"][i] <= shape[i] <= profile["max"][i] for i in (0, 1))


def _run_engine_parity(
    root: Path, manifest: dict[str, Any], rec: dict[str, Any], samples: list[Any], tol: P.Tolerance
) -> dict[str, Any]:
    multiple = int(manifest["input"]["pad_multiple"])
    profiles = {p["name"]: p for p in manifest["shape_profiles"]}
    profile = profiles.get(rec["profile"])
    graphs = manifest["graphs"]
    ctx_spec = graphs.get("context")
    is_context = ctx_spec is not None and rec["graph"] == ctx_spec["file"]
    main = next((g for g in graphs["main"] if g["file"] == rec["graph"]), None)
    row = dict(rec, checked="record")
    if profile is None:
        raise fmt.BundleError(f"engine {rec['engine']} names shape profile {rec['profile']!r}, which the bundle lacks")
    for img, ref, ctx_ref, entry in samples:
        h, w = img.shape[:2]
        size = [h, w] if is_context else list(fmt.padded_size(h, w, multiple))
        if rec["dla_core"] is not None:
            fits = size == list(fmt.padded_size(profile["opt"][0], profile["opt"][1], multiple))
        else:
            fits = _fits(size, profile if is_context else _padded_profile(profile, multiple))
        if not fits:
            continue
        x = P.to_nchw(img)
        if is_context:
            got = _run_engine(root / rec["engine"], {"image": x})
            err = max_abs(got, ctx_ref) if ctx_ref is not None else 0.0
            if err > tol.context_atol:
                raise fmt.BundleError(f"engine {rec['engine']}: context error {err:.2e} > {tol.context_atol:.0e}")
            row.update(checked="parity", max_abs=err)
            return row
        if main is None:
            raise fmt.BundleError(f"engine {rec['engine']} was built from {rec['graph']}, which is not a graph here")
        if main.get("expert") is not None and entry.get("expert") != main["expert"]:
            continue  # this sample routes to another expert
        feeds = {"image": np.ascontiguousarray(fmt.pad_image(x, multiple), dtype=np.float32)}
        if len(main["inputs"]) > 1:
            feeds["context"] = ctx_ref  # type: ignore[assignment]
        got = fmt.crop_clamp(_run_engine(root / rec["engine"], feeds), h, w)
        err, psnr = max_abs(got, ref), psnr_db(got, ref)
        if err > tol.atol or psnr < tol.min_psnr_db:
            raise fmt.BundleError(
                f"engine {rec['engine']} differs from the reference (max abs {err:.2e}, PSNR {psnr:.1f} dB); "
                "rebuild it, or re-export"
            )
        row.update(checked="parity", max_abs=err, psnr_db=psnr)
        return row
    row["checked"] = "record (no bundled sample fits its shape profile)"
    return row


def _padded_profile(profile: dict[str, Any], multiple: int) -> dict[str, Any]:
    return {
        k: list(fmt.padded_size(v[0], v[1], multiple)) if k in ("min", "opt", "max") else v for k, v in profile.items()
    }
