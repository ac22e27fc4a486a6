"""edgerain verify: tampered, incomplete or foreign bundles and engines are refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgerain import bundle as fmt
from edgerain.cli import main
from edgerain.export import verify_bundle


def _rewrite_manifest(root: Path, change) -> None:
    m = json.loads((root / fmt.MANIFEST_NAME).read_text())
    change(m)
    (root / fmt.MANIFEST_NAME).write_text(fmt.dumps_manifest(m))


def _refused(root: Path, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(fmt.BundleError, match=message):
        verify_bundle(root)
    assert main(["verify", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_altered_graph_is_refused(bundle_copy, capsys: pytest.CaptureFixture[str]) -> None:
    root = bundle_copy("rdmc-tiny")
    data = bytearray((root / "main_0.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "main_0.onnx").write_bytes(bytes(data))
    _refused(root, "main_0.onnx does not match its sha256", capsys)


def test_missing_and_extra_files_are_refused(bundle_copy, capsys: pytest.CaptureFixture[str]) -> None:
    root = bundle_copy("rdmc-tiny")
    (root / "samples" / "sample_1.npy").unlink()
    _refused(root, "incomplete: samples/sample_1.npy is missing", capsys)
    root = bundle_copy("fclip-unet-tiny")
    (root / "extra.onnx").write_bytes(b"not mine")
    _refused(root, "does not list: extra.onnx", capsys)
    root = bundle_copy("fclip-unet-tiny")
    (root / fmt.MANIFEST_NAME).unlink()
    _refused(root, "manifest.json is missing", capsys)


def test_manifest_schema_is_enforced(bundle_copy, capsys: pytest.CaptureFixture[str]) -> None:
    root = bundle_copy("rdmc-tiny")
    _rewrite_manifest(root, lambda m: m.update(precision="fp8"))
    _refused(root, "precision is 'fp8'", capsys)
    root = bundle_copy("rdmc-tiny")
    _rewrite_manifest(root, lambda m: m["input"].update(pad_mode="zeros"))
    _refused(root, "input.pad_mode", capsys)
    root = bundle_copy("rdmc-tiny")
    _rewrite_manifest(root, lambda m: m["graphs"]["main"][0].update(file="../escape.onnx"))
    _refused(root, "not a plain path inside the bundle", capsys)
    root = bundle_copy("rdmc-tiny")
    _rewrite_manifest(root, lambda m: m.update(format_version=99))
    _refused(root, "format version 99 is not supported", capsys)


def test_verify_really_runs_parity(bundle_copy, capsys: pytest.CaptureFixture[str]) -> None:
    """A consistently re-hashed but wrong reference output fails the parity re-run."""
    root = bundle_copy("clip-rpn-tiny")
    ref = root / "samples" / "sample_0.npy"
    np.save(ref, np.clip(np.load(ref) + 0.05, 0, 1).astype(np.float32))
    _rewrite_manifest(root, lambda m: m["files"].update({"samples/sample_0.npy": fmt.file_entry(ref)}))
    _refused(root, "fails parity with ONNX Runtime", capsys)


def _add_engine(root: Path, **overrides: object) -> None:
    m = fmt.read_manifest(root)
    engine = root / fmt.ENGINES_DIR / "main_0.720p.engine"
    engine.parent.mkdir(exist_ok=True)
    engine.write_bytes(b"serialized engine bytes")
    rec = {
        "engine": "engines/main_0.720p.engine",
        "graph": "main_0.onnx",
        "graph_sha256": m["files"]["main_0.onnx"]["sha256"],
        "profile": "720p",
        "precision": m["precision"],
        "dla_core": None,
        "tensorrt": "10.3.0",
        "gpu": "Jetson AGX Orin iGPU",
        "compute_capability": "8.7",
        "jetpack": "L4T 36.4.3",
        "sha256": fmt.file_entry(engine)["sha256"],
    }
    rec.update(overrides)
    fmt.engine_record_path(engine).write_text(json.dumps(rec))


@pytest.fixture
def jetson_bundle(bundle_copy) -> Path:
    """The rdmc bundle re-targeted (in its manifest) to jetson-orin, as an engine's home."""
    from edgerain.targets import get_target

    root = bundle_copy("rdmc-tiny")
    _rewrite_manifest(root, lambda m: m.update(target=get_target("jetson-orin").manifest_entry()))
    return root


def test_matching_engine_record_is_accepted(jetson_bundle: Path) -> None:
    _add_engine(jetson_bundle)
    report = verify_bundle(jetson_bundle)
    assert [e["engine"] for e in report.engines] == ["engines/main_0.720p.engine"]
    assert "not importable" in report.tensorrt_note or "TensorRT" in report.tensorrt_note


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"compute_capability": "8.6", "gpu": "NVIDIA GeForce RTX 3090"}, "built for another GPU"),
        ({"tensorrt": "10.1.0"}, "built with TensorRT 10.1.0 but the bundle targets TensorRT 10.3"),
        ({"jetpack": "L4T 35.4.1"}, "targets JetPack 6.2"),
        ({"graph_sha256": "0" * 64}, "built from another version of main_0.onnx"),
        ({"sha256": "f" * 64}, "does not match the sha256 in its record"),
    ],
)
def test_foreign_engines_are_refused_with_rebuild_hint(
    jetson_bundle: Path, overrides: dict, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_engine(jetson_bundle, **overrides)
    _refused(jetson_bundle, message, capsys)
    with pytest.raises(fmt.BundleError, match=r"build_engine\.sh"):
        verify_bundle(jetson_bundle)


def test_engine_without_record_is_refused(jetson_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (jetson_bundle / fmt.ENGINES_DIR).mkdir()
    (jetson_bundle / fmt.ENGINES_DIR / "main_0.1080p.engine").write_bytes(b"x")
    _refused(jetson_bundle, "has no record", capsys)
