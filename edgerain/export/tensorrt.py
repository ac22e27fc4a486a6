"""TensorRT engines for a bundle: the jobs, ``build_engine.sh`` (trtexec), Python builds, compatibility.

Engines are specific to the GPU, the TensorRT version and (on Jetsons) the JetPack release, so a
bundle ships the ONNX graphs and a script that builds the engines on the device; ``export`` builds
them itself only where the ``tensorrt`` package is importable *and* the local GPU is the target's.
Every engine gets a JSON record beside it (:data:`edgerain.bundle.ENGINE_RECORD_KEYS`) that
``edgerain verify`` checks against the bundle's target and the local TensorRT.

Precision flags respect the graphs' own types:
* fp32 graphs: no reduced precision, and ``--noTF32`` so that fp32 means fp32;
* fp16 graphs (weights and activations converted in the ONNX, I/O float32): ``--stronglyTyped`` on
  the GPU, so TensorRT keeps exactly the graph's types (the LayerNorm statistics stay float32);
  DLA builds use ``--fp16`` instead, as TensorRT 10 builds DLA loadables from weakly typed networks;
* int8 graphs carry explicit Q/DQ scales: ``--int8 --fp16`` (fp16 for the unquantised layers) and
  no calibration cache, since TensorRT takes the scales from the Q/DQ nodes.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgerain import bundle as fmt
from edgerain.errors import EdgerainError, MissingCapabilityError
from edgerain.targets import ShapeProfile, Target
from edgerain.utils import atomic_path

TIMING_CACHE = f"{fmt.ENGINES_DIR}/timing.cache"


@dataclasses.dataclass(frozen=True)
class EngineJob:
    graph: str  # ONNX file in the bundle
    role: str  # "context" | "main"
    precision: str  # the graph's precision
    profile: ShapeProfile  # sizes of the graph's image input (padded for main graphs)
    shapes: dict[str, tuple[list[int], list[int], list[int]]]  # input -> (min, opt, max) dims
    dla_core: int | None
    workspace_mib: int

    @property
    def engine(self) -> str:
        stem = Path(self.graph).stem
        dla = f".dla{self.dla_core}" if self.dla_core is not None else ""
        return f"{fmt.ENGINES_DIR}/{stem}.{self.profile.name}{dla}.engine"

    def precision_flags(self) -> list[str]:
        if self.precision == "fp32":
            return ["--noTF32"]
        if self.precision == "fp16":
            return ["--fp16"] if self.dla_core is not None else ["--stronglyTyped"]
        return ["--int8", "--fp16"]

    def trtexec_args(self) -> list[str]:
        def dims(i: int) -> str:
            return ",".join(f"{name}:{'x'.join(map(str, s[i]))}" for name, s in self.shapes.items())

        args = [
            f"--onnx={self.graph}",
            f"--saveEngine={self.engine}",
            f"--minShapes={dims(0)}",
            f"--optShapes={dims(1)}",
            f"--maxShapes={dims(2)}",
            *self.precision_flags(),
            f"--memPoolSize=workspace:{self.workspace_mib}M",
            f"--timingCacheFile={TIMING_CACHE}",
        ]
        if self.dla_core is not None:
            args += [f"--useDLACore={self.dla_core}", "--allowGPUFallback"]
        return [*args, "--skipInference"]


def engine_jobs(manifest: Mapping[str, Any], target: Target, dla_core: int | None = None) -> list[EngineJob]:
    """One engine per graph and shape profile; with ``dla_core``, DLA variants of the main graphs.

    Context graphs see the whole unpadded image; main graphs see it padded to the pad multiple.
    DLA has no dynamic shapes, so a DLA engine is built for the profile's ``opt`` size only.
    """
    if target.workspace_mib is None:
        raise EdgerainError(f"target '{target.name}' has no GPU: there are no TensorRT engines to build")
    if dla_core is not None and not 0 <= dla_core < target.dla_cores:
        raise EdgerainError(f"target '{target.name}' has {target.dla_cores} DLA cores; core {dla_core} does not exist")
    multiple = int(manifest["input"]["pad_multiple"])
    graphs = manifest["graphs"]
    entries = ([("context", graphs["context"])] if graphs.get("context") else []) + [
        ("main", g) for g in graphs["main"]
    ]
    jobs = []
    for profile in target.shape_profiles:
        for role, g in entries:
            prof = profile.padded(multiple) if role == "main" else profile
            variants: list[int | None] = [None]
            if dla_core is not None and role == "main" and g["precision"] in ("fp16", "int8"):
                variants.append(dla_core)
            for core in variants:
                p = prof if core is None else ShapeProfile(prof.name, prof.opt, prof.opt, prof.opt)
                shapes: dict[str, tuple[list[int], list[int], list[int]]] = {}
                for spec in g["inputs"]:
                    if spec["name"] == "image":
                        shapes["image"] = ([1, 3, *p.min], [1, 3, *p.opt], [1, 3, *p.max])
                    else:
                        fixed = [int(d) for d in spec["shape"]]
                        shapes[spec["name"]] = (fixed, fixed, fixed)
                jobs.append(EngineJob(g["file"], role, g["precision"], p, shapes, core, target.workspace_mib))
    return jobs


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def same_minor(a: str, b: str) -> bool:
    return _version_tuple(a)[:2] == _version_tuple(b)[:2]


# --------------------------------------------------------------------------------------------
# build_engine.sh


_SCRIPT_HEAD = r"""#!/usr/bin/env bash
# TensorRT engines for this edgerain bundle. Generated by `edgerain export`; run it ON THE DEVICE.
#   model {model}, precision {precision}, target {target} ({description})
#   expects TensorRT {trt}{jetpack_note}, GPU compute capability {sm}
# Usage: ./build_engine.sh [--dla [CORE]] [--force]
#   --dla [CORE]  also build DLA engines of the main graphs (default core 0; the target has {dla_cores})
#   --force       rebuild engines that already exist
# Environment: TRTEXEC=/path/to/trtexec; EDGERAIN_ALLOW_TRT_MISMATCH=1 builds with another TensorRT anyway
# (the engines record the version they were built with, and `edgerain verify` compares it).
set -euo pipefail
cd "$(dirname "$0")"

EXPECTED_TRT="{trt}"
EXPECTED_SM="{sm}"
EXPECTED_L4T="{l4t}"
DLA_CORES={dla_cores}
DLA_CORE=""
FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dla) DLA_CORE=0; if [ $# -gt 1 ] && [[ "$2" =~ ^[0-9]+$ ]]; then DLA_CORE="$2"; shift; fi ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$DLA_CORE" ] && [ "$DLA_CORE" -ge "$DLA_CORES" ]; then
  echo "error: this target has $DLA_CORES DLA core(s); --dla $DLA_CORE is not one of them" >&2; exit 2
fi

TRTEXEC="${{TRTEXEC:-$(command -v trtexec || true)}}"
[ -z "$TRTEXEC" ] && [ -x /usr/src/tensorrt/bin/trtexec ] && TRTEXEC=/usr/src/tensorrt/bin/trtexec
if [ -z "$TRTEXEC" ]; then
  echo "error: trtexec not found; on a Jetson it ships with JetPack at /usr/src/tensorrt/bin/trtexec," >&2
  echo "       elsewhere with TensorRT; or set TRTEXEC=/path/to/trtexec" >&2
  exit 3
fi
TRT_CODE="$("$TRTEXEC" --help 2>&1 | grep -o 'TensorRT v[0-9]*' | head -n 1 | tr -dc '0-9')"
if [ -z "$TRT_CODE" ]; then echo "error: cannot tell the TensorRT version of $TRTEXEC" >&2; exit 3; fi
TRT_VERSION="$((TRT_CODE / 10000)).$(((TRT_CODE / 100) % 100)).$((TRT_CODE % 100))"
if [ "${{TRT_VERSION%.*}}" != "$EXPECTED_TRT" ] && [ "${{EXPECTED_TRT}}" != "${{TRT_VERSION}}" ]; then
  if [ "${{EDGERAIN_ALLOW_TRT_MISMATCH:-0}}" != "1" ]; then
    echo "error: this bundle was exported for TensorRT $EXPECTED_TRT but $TRTEXEC is TensorRT $TRT_VERSION." >&2
    echo "       Either install TensorRT $EXPECTED_TRT (the target's JetPack), or re-export for this device with a" >&2
    echo "       target profile whose software.tensorrt is ${{TRT_VERSION%.*}} (edgerain export --target my-device.json)," >&2
    echo "       or build anyway with EDGERAIN_ALLOW_TRT_MISMATCH=1 (untested combination)." >&2
    exit 4
  fi
  echo "warning: building with TensorRT $TRT_VERSION, not $EXPECTED_TRT (EDGERAIN_ALLOW_TRT_MISMATCH=1)" >&2
fi

JETPACK=null
if [ -r /etc/nv_tegra_release ]; then
  L4T="$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/\1.\2/p' /etc/nv_tegra_release)"
  JETPACK="\"L4T $L4T\""
  if [ -n "$EXPECTED_L4T" ] && [ "${{L4T#"$EXPECTED_L4T"}}" = "$L4T" ]; then
    echo "error: this bundle targets L4T $EXPECTED_L4T (JetPack {jetpack}) but this device runs L4T $L4T;" >&2
    echo "       flash JetPack {jetpack}, or re-export with a target profile for this JetPack." >&2
    exit 4
  fi
  GPU_NAME="$(tr -d '\0' < /proc/device-tree/model 2>/dev/null || echo Jetson) iGPU"
  GPU_SM="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 || true)"
  # Every Orin module's iGPU is compute capability 8.7; older JetPacks' nvidia-smi cannot say so.
  [ -z "$GPU_SM" ] && GPU_SM="$EXPECTED_SM"
else
  GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)"
  GPU_SM="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 || true)"
fi
if [ -n "$EXPECTED_L4T" ] && [ ! -r /etc/nv_tegra_release ]; then
  echo "error: this bundle targets a Jetson (JetPack {jetpack}); this machine is not one. Run the script on the device," >&2
  echo "       or re-export for this GPU (edgerain targets lists the profiles)." >&2
  exit 4
fi
if [ -z "$GPU_SM" ]; then echo "error: no NVIDIA GPU found (nvidia-smi reports none)" >&2; exit 3; fi
if [ "$GPU_SM" != "$EXPECTED_SM" ]; then
  echo "error: this bundle targets compute capability $EXPECTED_SM but this GPU ($GPU_NAME) is $GPU_SM;" >&2
  echo "       re-export for this GPU (edgerain export --target ...; edgerain targets lists the profiles)." >&2
  exit 4
fi

sha() {{ sha256sum "$1" | cut -d' ' -f1; }}
mkdir -p {engines}

build() {{  # build ENGINE GRAPH GRAPH_SHA256 PROFILE PRECISION DLA_CORE|null -- trtexec args...
  local engine="$1" graph="$2" graph_sha="$3" profile="$4" precision="$5" dla="$6"; shift 7
  if [ "$FORCE" = 0 ] && [ -f "$engine" ] && [ -f "$engine.json" ]; then echo "exists: $engine"; return; fi
  if [ "$(sha "$graph")" != "$graph_sha" ]; then
    echo "error: $graph does not match the bundle's manifest (altered); re-export the bundle" >&2; exit 5
  fi
  echo "building $engine"
  if ! "$@" > "$engine.log" 2>&1; then
    echo "error: trtexec failed for $engine; see $engine.log" >&2; exit 6
  fi
  local dla_json=null; [ "$dla" != null ] && dla_json="$dla"
  printf '{{"engine": "%s", "graph": "%s", "graph_sha256": "%s", "profile": "%s", "precision": "%s", "dla_core": %s, "tensorrt": "%s", "gpu": "%s", "compute_capability": "%s", "jetpack": %s, "sha256": "%s"}}\n' \
    "$engine" "$graph" "$graph_sha" "$profile" "$precision" "$dla_json" "$TRT_VERSION" "$GPU_NAME" "$GPU_SM" "$JETPACK" "$(sha "$engine")" > "$engine.json"
}}

"""


def build_script(manifest: Mapping[str, Any], target: Target) -> str:
    """The text of ``build_engine.sh`` for a bundle (deterministic: no dates, no local paths)."""
    if target.tensorrt is None or target.sm is None:
        return (
            "#!/usr/bin/env bash\n"
            f"# Target {target.name} ({target.description}) has no GPU: ONNX Runtime runs the graphs directly.\n"
            'echo "nothing to build: this bundle targets a CPU; run it with edgerain derain --bundle ."\n'
        )
    l4t = str(target.data["software"].get("l4t") or "")
    text = _SCRIPT_HEAD.format(
        model=manifest["model"]["name"],
        precision=manifest["precision"],
        target=target.name,
        description=target.description,
        trt=target.tensorrt,
        jetpack_note=f" (JetPack {target.jetpack}, L4T {l4t})" if target.jetpack else "",
        jetpack=target.jetpack or "",
        sm=target.sm,
        l4t=l4t,
        dla_cores=target.dla_cores,
        engines=fmt.ENGINES_DIR,
    )
    files = manifest["files"]

    def line(job: EngineJob, dla_var: bool) -> str:
        args = job.trtexec_args()
        if dla_var:
            args = [a if not a.startswith("--useDLACore=") else '--useDLACore="$DLA_CORE"' for a in args]
            engine = job.engine.replace(f".dla{job.dla_core}.", '.dla"$DLA_CORE".')
            args = [a if not a.startswith("--saveEngine=") else f"--saveEngine={engine}" for a in args]
        else:
            engine = shlex.quote(job.engine)
        quoted = [a if dla_var and "$DLA_CORE" in a else shlex.quote(a) for a in args]
        dla = '"$DLA_CORE"' if dla_var else "null"
        head = f"build {engine} {shlex.quote(job.graph)} {files[job.graph]['sha256']} {job.profile.name} {job.precision} {dla} --"
        return f'{head} "$TRTEXEC" ' + " ".join(quoted)

    gpu_lines: list[str] = []
    dla_lines: list[str] = []
    for job in engine_jobs(manifest, target, dla_core=0 if target.dla_cores else None):
        (dla_lines if job.dla_core is not None else gpu_lines).append(line(job, job.dla_core is not None))
    out = [text, "# GPU engines: one per graph and shape profile"]
    out += gpu_lines
    if dla_lines:
        out += ["", "# DLA engines of the main graphs (static shapes; see dla_report.json for GPU fallbacks)"]
        out += ['if [ -n "$DLA_CORE" ]; then', *("  " + ln for ln in dla_lines), "fi"]
    out += ["", 'echo "engines are in $(pwd)/engines; check them with: edgerain verify $(pwd)"', ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Compatibility of built engines with the bundle, its target and (when importable) this TensorRT.


def tensorrt_version() -> str | None:
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(tensorrt.__version__)


def check_engine_record(rec: Mapping[str, Any], manifest: Mapping[str, Any], bundle: Path) -> None:
    """Refuse an engine that was not built from this bundle's graph for this bundle's target."""
    from edgerain.utils import sha256_file

    target = manifest["target"]
    sw = target.get("software") or {}
    name = rec["engine"]
    rebuild = f"rebuild it on the device: ./build_engine.sh --force (in {bundle})"
    files = manifest["files"]
    if rec["graph"] not in files or files[rec["graph"]]["sha256"] != rec["graph_sha256"]:
        raise fmt.BundleError(f"engine {name} was built from another version of {rec['graph']}; {rebuild}")
    path = bundle / name
    if sha256_file(path) != rec["sha256"]:
        raise fmt.BundleError(f"engine {name} does not match the sha256 in its record (altered); {rebuild}")
    want_sm = (target.get("gpu") or {}).get("sm")
    if want_sm is None:
        raise fmt.BundleError(f"engine {name} is in a bundle for a CPU target ({target['name']}); remove it")
    if rec["compute_capability"] != want_sm:
        raise fmt.BundleError(
            f"engine {name} was built for another GPU ({rec['gpu']}, sm {rec['compute_capability']}) but the bundle "
            f"targets sm {want_sm}; {rebuild}"
        )
    want_trt = sw.get("tensorrt")
    if want_trt and not same_minor(rec["tensorrt"], want_trt):
        raise fmt.BundleError(
            f"engine {name} was built with TensorRT {rec['tensorrt']} but the bundle targets TensorRT {want_trt}; {rebuild}"
        )
    want_l4t = sw.get("l4t")
    if want_l4t and not (rec["jetpack"] or "").startswith(f"L4T {want_l4t}"):
        raise fmt.BundleError(
            f"engine {name} was built on {rec['jetpack'] or 'a machine without JetPack'} but the bundle targets "
            f"JetPack {sw.get('jetpack')} (L4T {want_l4t}); {rebuild}"
        )
    local = tensorrt_version()
    if local is not None and local != rec["tensorrt"]:
        raise fmt.BundleError(
            f"engine {name} was built with TensorRT {rec['tensorrt']} and cannot load in this TensorRT {local}; {rebuild}"
        )


# --------------------------------------------------------------------------------------------
# Building with the TensorRT Python API (used by export where TensorRT is importable).


def local_gpu() -> tuple[str, str] | None:
    """(name, compute capability) of CUDA device 0, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


def local_l4t() -> str | None:
    p = Path("/etc/nv_tegra_release")
    if not p.is_file():
        return None
    import re

    m = re.search(r"# R(\d+) \(release\), REVISION: ([\d.]+)", p.read_text(errors="replace"))
    return f"L4T {m.group(1)}.{m.group(2)}" if m else None


def can_build_here(target: Target) -> str | None:
    """None when engines for ``target`` can be built on this machine; else the reason why not."""
    version = tensorrt_version()
    if version is None:
        return "the tensorrt Python package is not importable here"
    if target.tensorrt is None or target.sm is None:
        return f"target {target.name} has no GPU"
    if not same_minor(version, target.tensorrt):
        return f"this TensorRT is {version}, the target's is {target.tensorrt}"
    gpu = local_gpu()
    if gpu is None:
        return "no CUDA GPU is visible"
    if gpu[1] != target.sm:
        return f"this GPU ({gpu[0]}) is sm {gpu[1]}, the target's is sm {target.sm}"
    l4t = target.data["software"].get("l4t")
    if l4t and not (local_l4t() or "").startswith(f"L4T {l4t}"):
        return f"this machine is not a Jetson on L4T {l4t}"
    return None


def build_engines(bundle: Path, manifest: Mapping[str, Any], target: Target, jobs: Sequence[EngineJob]) -> list[dict]:
    """Build ``jobs`` with the TensorRT Python API into ``bundle/engines`` and write their records."""
    import json

    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError:
        raise MissingCapabilityError("building engines needs the tensorrt Python package") from None
    from edgerain.utils import sha256_file

    gpu = local_gpu()
    assert gpu is not None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    cache_path = bundle / TIMING_CACHE
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for job in jobs:
        strongly = "--stronglyTyped" in job.precision_flags()
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse((bundle / job.graph).read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EdgerainError(f"TensorRT cannot parse {job.graph}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, job.workspace_mib << 20)
        if job.precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)
        elif not strongly:
            config.set_flag(trt.BuilderFlag.FP16)
            if job.precision == "int8":
                config.set_flag(trt.BuilderFlag.INT8)
        if job.dla_core is not None:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = job.dla_core
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in job.shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EdgerainError(f"TensorRT failed to build {job.engine} (see the TensorRT log above)")
        # Each file is replaced whole: an interrupted build leaves old or new files, never a
        # truncated engine (which would fail to deserialize on the device).
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        engine_path = bundle / job.engine
        with atomic_path(engine_path) as tmp:
            tmp.write_bytes(bytes(serialized))
        rec = {
            "engine": job.engine,
            "graph": job.graph,
            "graph_sha256": manifest["files"][job.graph]["sha256"],
            "profile": job.profile.name,
            "precision": job.precision,
            "dla_core": job.dla_core,
            "tensorrt": str(trt.__version__),
            "gpu": gpu[0],
            "compute_capability": gpu[1],
            "jetpack": local_l4t(),
            "sha256": sha256_file(engine_path),
        }
        with atomic_path(fmt.engine_record_path(engine_path)) as tmp:
            tmp.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
        records.append(rec)
    return records
