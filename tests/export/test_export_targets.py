"""Target profiles, and the trtexec commands derived from them (checked against the profile values)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from edgerain import bundle as fmt
from edgerain.cli import main
from edgerain.export import tensorrt as T
from edgerain.targets import BUILTIN_DIR, TargetError, get_target, list_targets

BUILTIN = ["a100", "h100", "jetson-orin-agx", "jetson-orin-nano", "jetson-orin-nx", "rtx-4090", "x86-cpu"]
GPU_TARGETS = [
    "jetson-orin-agx",
    "jetson-orin-nx",
    "jetson-orin-nano",
    "jetson-orin-nano:super",
    "rtx-4090",
    "a100",
    "h100",
]


def test_builtin_profiles_load_and_validate() -> None:
    names = {t.name for t in list_targets()}
    assert set(BUILTIN) | {"jetson-orin-nano:super", "jetson-orin-nx:super"} <= names
    assert get_target("jetson-orin").name == "jetson-orin-agx"
    agx = get_target("jetson-orin-agx")
    assert (agx.sm, agx.dla_cores, agx.tensorrt, agx.jetpack) == ("8.7", 2, "10.3", "6.2")
    assert agx.data["memory"]["bandwidth_gbs"] == 204.8 and agx.data["gpu"]["peak_dense_int8_tops"] == 85.0
    assert get_target("jetson-orin-nano").dla_cores == 0
    nano, sup = get_target("jetson-orin-nano"), get_target("jetson-orin-nano:super")
    assert nano.data["memory"]["bandwidth_gbs"] == 68.0 and sup.data["memory"]["bandwidth_gbs"] == 102.0
    assert sup.data["gpu"]["sm"] == "8.7"  # untouched fields come from the base profile
    assert get_target("x86-cpu").tensorrt is None


def test_user_profiles_from_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = json.loads((BUILTIN_DIR / "jetson-orin-nx.json").read_text())
    data.update(name="my-orin", description="my Orin NX 8GB", tensorrt_workspace_mib=1024)
    data["memory"]["size_gb"] = 8
    data["shape_profiles"] = [{"name": "square", "min": [64, 64], "opt": [512, 512], "max": [512, 512]}]
    path = tmp_path / "my-orin.json"
    path.write_text(json.dumps(data))
    assert get_target(str(path)).workspace_mib == 1024
    monkeypatch.setenv("EDGERAIN_TARGETS_DIR", str(tmp_path))
    assert [p.name for p in get_target("my-orin").shape_profiles] == ["square"]
    assert "my-orin" in {t.name for t in list_targets()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("dla_cores"), "missing 'dla_cores'"),
        (lambda d: d["gpu"].update(sm="sm87"), "MAJOR.MINOR"),
        (lambda d: d.update(tensorrt_workspace_mib=10000), "exceeds half the device memory"),
        (lambda d: d.update(default_precision="int4"), "'default_precision'"),
        (lambda d: d["shape_profiles"][0].update(min=[2000, 2000]), "min <= opt <= max"),
        (lambda d: d["software"].update(tensorrt=None), "software.tensorrt"),
    ],
)
def test_bad_profiles_are_one_line_errors(
    tmp_path: Path, change, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads((BUILTIN_DIR / "jetson-orin-nx.json").read_text())
    change(data)
    path = tmp_path / "jetson-orin-nx.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TargetError, match=message):
        get_target(str(path))
    assert main(["targets", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: target profile") and err.count("\n") == 1


def test_targets_command_lists_every_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in [*BUILTIN, "jetson-orin-nano:super", "(jetson-orin)"]:
        assert name in out
    assert main(["targets", "jetson-orn"]) == 2
    assert "did you mean 'jetson-orin'" in capsys.readouterr().err


def _manifest(precision: str, multiple: int = 16, with_context: bool = True) -> dict:
    def io(name: str, shape: list) -> dict:
        return {"name": name, "shape": shape, "dtype": "float32"}

    img = io("image", [1, 3, "height", "width"])
    mains = [
        {"file": "main_0.onnx", "precision": precision, "inputs": [img, io("context", [1, 5, 16])], "outputs": [img]}
    ]
    ctx = {
        "file": "context.onnx",
        "precision": "fp32",
        "kind": "prior",
        "inputs": [img],
        "outputs": [io("tokens", [1, 5, 16])],
    }
    files = {f: {"sha256": "a" * 64, "bytes": 1} for f in ("main_0.onnx", "context.onnx")}
    return {
        "model": {"name": "clip-weather-tiny"},
        "precision": precision,
        "input": {"pad_multiple": multiple},
        "graphs": {"context": ctx if with_context else None, "main": mains},
        "files": files,
    }


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("name", GPU_TARGETS)
def test_trtexec_commands_follow_the_target_profile(name: str, precision: str) -> None:
    target = get_target(name)
    m = _manifest(precision)
    jobs = T.engine_jobs(m, target, dla_core=0 if target.dla_cores else None)
    gpu_jobs = [j for j in jobs if j.dla_core is None]
    dla_jobs = [j for j in jobs if j.dla_core is not None]
    assert len(gpu_jobs) == 2 * len(target.shape_profiles)  # context + main, one engine per profile
    for job in jobs:
        args = job.trtexec_args()
        assert f"--memPoolSize=workspace:{target.workspace_mib}M" in args
        assert f"--timingCacheFile={T.TIMING_CACHE}" in args and "--skipInference" in args
        assert not any(a.startswith("--calib") for a in args)  # Q/DQ carries the int8 scales
        assert f"--saveEngine={job.engine}" in args
    for profile in target.shape_profiles:
        padded = profile.padded(16)
        main_job = next(j for j in gpu_jobs if j.role == "main" and j.profile.name == profile.name)
        ctx_job = next(j for j in gpu_jobs if j.role == "context" and j.profile.name == profile.name)
        hw = lambda p: f"{p[0]}x{p[1]}"  # noqa: E731
        args = main_job.trtexec_args()
        assert f"--minShapes=image:1x3x{hw(padded.min)},context:1x5x16" in args
        assert f"--optShapes=image:1x3x{hw(padded.opt)},context:1x5x16" in args
        assert f"--maxShapes=image:1x3x{hw(padded.max)},context:1x5x16" in args
        assert f"--maxShapes=image:1x3x{hw(profile.max)}" in ctx_job.trtexec_args()  # unpadded
        assert "--noTF32" in ctx_job.trtexec_args()  # context graphs stay fp32
        expected = {"fp32": ["--noTF32"], "fp16": ["--stronglyTyped"], "int8": ["--int8", "--fp16"]}[precision]
        assert all(flag in args for flag in expected)
    if target.dla_cores and precision != "fp32":
        assert len(dla_jobs) == len(target.shape_profiles)
        for job in dla_jobs:
            args = job.trtexec_args()
            assert job.role == "main" and "--useDLACore=0" in args and "--allowGPUFallback" in args
            assert job.profile.min == job.profile.opt == job.profile.max  # DLA: static shapes
            assert "--stronglyTyped" not in args and "--fp16" in args
    else:
        assert dla_jobs == []
    script = T.build_script(m, target)
    assert f'EXPECTED_TRT="{target.tensorrt}"' in script and f'EXPECTED_SM="{target.sm}"' in script
    assert script.count("\nbuild ") == len(gpu_jobs) and script.count("\n  build ") == len(dla_jobs)
    assert ("--useDLACore" in script) == (bool(target.dla_cores) and precision != "fp32")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_dla_core_must_exist() -> None:
    with pytest.raises(Exception, match="has 2 DLA cores"):
        T.engine_jobs(_manifest("fp16"), get_target("jetson-orin-agx"), dla_core=2)


def _fake_tools(bin_dir: Path, trt_code: str, compute_cap: str) -> None:
    bin_dir.mkdir()
    (bin_dir / "trtexec").write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = --help ]; then echo "&&&& RUNNING TensorRT.trtexec [TensorRT v{trt_code}]"; exit 0; fi\n'
        'for a in "$@"; do case "$a" in --saveEngine=*) echo "engine for $*" > "${a#--saveEngine=}";; esac; done\n'
    )
    (bin_dir / "nvidia-smi").write_text(
        "#!/usr/bin/env bash\n"
        f'case "$*" in *compute_cap*) echo "{compute_cap}";; *) echo "NVIDIA GeForce RTX 4090";; esac\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)


@pytest.mark.skipif(os.path.exists("/etc/nv_tegra_release"), reason="the fake desktop GPU needs a non-Jetson host")
def test_build_script_runs_and_writes_engine_records(bundle_copy, tmp_path: Path) -> None:
    """build_engine.sh against stand-in trtexec/nvidia-smi: engines + records that verify accepts."""
    root = bundle_copy("rdmc-tiny")
    target = get_target("rtx-4090")
    m = json.loads((root / fmt.MANIFEST_NAME).read_text())
    m["target"] = target.manifest_entry()
    m["shape_profiles"] = [p.as_dict() for p in target.shape_profiles]
    (root / fmt.BUILD_SCRIPT_NAME).write_text(T.build_script(m, target))
    m["files"] = fmt.hash_tree(root)
    (root / fmt.MANIFEST_NAME).write_text(fmt.dumps_manifest(m))
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    env.pop("TRTEXEC", None)

    _fake_tools(tmp_path / "bin", "100300", "8.9")  # TensorRT 10.3, but the profile expects 10.13
    run = subprocess.run(["bash", str(root / fmt.BUILD_SCRIPT_NAME)], env=env, capture_output=True, text=True)
    assert run.returncode == 4 and "exported for TensorRT 10.13 but" in run.stderr
    assert not (root / fmt.ENGINES_DIR).exists() or not any((root / fmt.ENGINES_DIR).glob("*.engine"))

    (tmp_path / "bin" / "trtexec").unlink()
    (tmp_path / "bin" / "nvidia-smi").unlink()
    (tmp_path / "bin").rmdir()
    _fake_tools(tmp_path / "bin", "101300", "8.6")  # right TensorRT, wrong GPU
    run = subprocess.run(["bash", str(root / fmt.BUILD_SCRIPT_NAME)], env=env, capture_output=True, text=True)
    assert run.returncode == 4 and "compute capability 8.9" in run.stderr

    for tool in ("trtexec", "nvidia-smi"):
        (tmp_path / "bin" / tool).unlink()
    (tmp_path / "bin").rmdir()
    _fake_tools(tmp_path / "bin", "101300", "8.9")
    run = subprocess.run(["bash", str(root / fmt.BUILD_SCRIPT_NAME)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    records = fmt.read_engine_records(root)
    assert len(records) == len(target.shape_profiles)
    assert {r["tensorrt"] for r in records} == {"10.13.0"} and {r["compute_capability"] for r in records} == {"8.9"}
    from edgerain.export import verify_bundle

    report = verify_bundle(root)
    assert len(report.engines) == len(records)
