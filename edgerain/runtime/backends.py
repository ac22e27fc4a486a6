"""Graph runners: one per backend, all computing the bundle's graphs on padded NCHW float32 arrays.

A runner exposes the bundle's graphs, nothing more: ``context(x)`` (the whole-image router scores or
prior tokens) and ``main(index, x_padded, context)`` (input + residual). Padding, tiling, routing and
blending live in :mod:`edgerain.runtime.derainer`, shared by every backend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgerain.errors import EdgerainError, MissingCapabilityError
from edgerain.ort_cpu import inference_session
from edgerain.runtime.spec import CPU_PROVIDER, RuntimeSpec
from edgerain.utils import atomic_path

log = logging.getLogger("edgerain.runtime")


class GraphRunner(Protocol):
    backend: str
    num_mains: int

    def context(self, x: np.ndarray) -> np.ndarray: ...

    def main(self, index: int, x: np.ndarray, context: np.ndarray | None) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


def choose_providers(wanted: tuple[str, ...] | list[str], available: list[str]) -> list[str]:
    """Keep the wanted execution providers this onnxruntime has, in order, CPU always last.

    Every provider dropped is logged, so a device silently running on the CPU is visible.
    """
    chosen = []
    for name in wanted:
        if name in available:
            if name not in chosen:
                chosen.append(name)
        else:
            log.warning("execution provider %s is not available in this onnxruntime build; falling back", name)
    if CPU_PROVIDER in chosen:
        chosen.remove(CPU_PROVIDER)
    chosen.append(CPU_PROVIDER)
    return chosen


class OrtRunner:
    """ONNX Runtime sessions for the context graph and each main graph."""

    backend = "ort"

    def __init__(
        self,
        spec: RuntimeSpec,
        providers: list[str] | None = None,
        threads: int | None = None,
        profile_prefix: str | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingCapabilityError("the 'ort' backend needs onnxruntime: pip install onnxruntime") from None
        self._ort = ort
        # Failures surface as EdgerainError with ORT's message; its own logger would print them twice.
        ort.set_default_logger_severity(4)
        self.providers = choose_providers(providers or list(spec.providers), ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        self._opts = opts
        self.context_session = self._session(spec.context_file) if spec.context_file else None
        self.main_sessions = [self._session(f) for f in spec.main_files]
        self.num_mains = len(self.main_sessions)
        self._main_inputs = [[i.name for i in s.get_inputs()] for s in self.main_sessions]

    def _session(self, path: Path) -> Any:
        try:
            sess = inference_session(path, self._opts, self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt graphs
            raise EdgerainError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}") from None
        used = sess.get_providers()
        if used[0] != self.providers[0]:
            log.warning("%s: %s could not be initialised; running on %s", path.name, self.providers[0], used[0])
        return sess

    def context(self, x: np.ndarray) -> np.ndarray:
        assert self.context_session is not None
        name = self.context_session.get_inputs()[0].name
        return _run_session(self.context_session, {name: x}, "the context graph")

    def main(self, index: int, x: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        names = self._main_inputs[index]
        feeds = {names[0]: x}
        if len(names) > 1:
            if context is None:
                raise EdgerainError(f"main graph {index} needs a context input but the bundle has no context graph")
            feeds[names[1]] = context
        return _run_session(self.main_sessions[index], feeds, f"main graph {index}")

    def end_profiling(self) -> list[str]:
        """Stop ORT profiling on every session; return the trace files written."""
        sessions = [s for s in [self.context_session, *self.main_sessions] if s is not None]
        return [s.end_profiling() for s in sessions]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "ort",
            "onnxruntime": self._ort.__version__,
            "providers": self.main_sessions[0].get_providers(),
        }


def _run_session(session: Any, feeds: dict[str, np.ndarray], what: str) -> np.ndarray:
    try:
        return session.run(None, feeds)[0]
    except Exception as exc:  # onnxruntime's own exception types; a broken graph is the bundle's fault
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in feeds.items())
        message = str(exc).splitlines()[0][-300:]
        raise EdgerainError(f"onnxruntime failed running {what} on {shapes}: {message}") from None


class TorchModelRunner:
    """A PyTorch :class:`DerainModel` seen through the bundle's graph interface.

    On a CUDA device the fused kernels are used by the models' op dispatch; ``cuda_graphs`` captures
    each main graph once per input shape and replays it (static shapes, as tiling produces).
    """

    backend = "torch"

    def __init__(self, model: Any, device: str | None = None, cuda_graphs: bool = False) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if cuda_graphs and self.device.type != "cuda":
            raise MissingCapabilityError("CUDA graphs need a CUDA device; none is available here")
        self.model = model.to(self.device).eval()
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple[Any, ...], tuple[Any, Any, Any, Any]] = {}
        family = getattr(model.config, "routing", None)
        self.kind = _torch_context_kind(model)
        self.routing_rule = None if family is None else ("hard-top1" if family == "hard" else "soft")
        self.num_mains = len(model.experts) if self.kind == "router" else 1
        self.pad_multiple = int(model.pad_multiple)

    def _tensor(self, x: np.ndarray) -> Any:
        return self._torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def context(self, x: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            t = self._tensor(x)
            ctx = self.model.router(t) if self.kind == "router" else self.model.global_context(t)
        return ctx.float().cpu().numpy()

    def _forward(self, index: int, x: Any, ctx: Any) -> Any:
        if self.kind == "router":
            return self.model.run_expert(index, x)
        return self.model.forward_padded(x, ctx)

    def main(self, index: int, x: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        torch = self._torch
        with torch.no_grad():
            t = self._tensor(x)
            ctx = self._tensor(context) if (context is not None and self.kind == "prior") else None
            if not self.cuda_graphs:
                return self._forward(index, t, ctx).float().cpu().numpy()
            key = (index, tuple(t.shape), None if ctx is None else tuple(ctx.shape))
            if key not in self._graphs:
                self._graphs[key] = self._capture(index, t, ctx)
            graph, static_x, static_ctx, static_out = self._graphs[key]
            static_x.copy_(t)
            if ctx is not None:
                static_ctx.copy_(ctx)
            graph.replay()
            return static_out.float().cpu().numpy()

    def _capture(self, index: int, x: Any, ctx: Any) -> tuple[Any, Any, Any, Any]:
        torch = self._torch
        static_x = x.clone()
        static_ctx = None if ctx is None else ctx.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
            for _ in range(2):
                self._forward(index, static_x, static_ctx)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(index, static_x, static_ctx)
        return graph, static_x, static_ctx, static_out

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "torch",
            "torch": self._torch.__version__,
            "device": str(self.device),
            "cuda_graphs": self.cuda_graphs,
        }


def _torch_context_kind(model: Any) -> str | None:
    if hasattr(model, "router") and hasattr(model, "experts"):
        return "router"
    probe = type(model).global_context
    from edgerain.models.base import DerainModel

    return None if probe is DerainModel.global_context else "prior"


class TrtRunner:
    """TensorRT engines for the bundle's ONNX graphs (TensorRT 10 API).

    Engines are specific to the GPU and TensorRT version: a prebuilt engine from the bundle's
    ``engines/`` folder (``build_engine.sh``) is used when its record matches this GPU, TensorRT
    version and graph hash; otherwise one is built here and cached in ``~/.cache/edgerain/engines``
    (never inside the bundle, whose file list is hashed). Device memory comes from torch.
    """

    backend = "trt"

    def __init__(self, spec: RuntimeSpec, fp16: bool = False, workspace_mib: int = 1024) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise MissingCapabilityError(
                "the 'trt' backend needs TensorRT's Python package (JetPack ships it on a Jetson; "
                "elsewhere install it from NVIDIA); use --backend ort here"
            ) from None
        try:
            import torch
        except ImportError:
            raise MissingCapabilityError("the 'trt' backend uses torch for CUDA memory: install torch") from None
        if not torch.cuda.is_available():
            raise MissingCapabilityError("the 'trt' backend needs a CUDA GPU; none is visible")
        from edgerain import bundle as bundle_format

        self._trt, self._torch = trt, torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.fp16 = fp16
        self.workspace = workspace_mib << 20
        self._gpu = torch.cuda.get_device_name()
        self._records = bundle_format.read_engine_records(spec.root)
        self._hashes = {name: entry["sha256"] for name, entry in spec.manifest["files"].items()}
        self._root = spec.root
        self.engines_used: list[str] = []
        self.context_engine = self._engine(spec.context_file) if spec.context_file else None
        self.main_engines = [self._engine(f) for f in spec.main_files]
        self.num_mains = len(self.main_engines)

    def _prebuilt(self, onnx_path: Path) -> Path | None:
        rel = onnx_path.relative_to(self._root).as_posix()
        for rec in self._records:
            if (
                rec["graph"] == rel
                and rec["graph_sha256"] == self._hashes.get(rel)
                and rec["gpu"] == self._gpu
                and self._trt.__version__.startswith(rec["tensorrt"])
                and rec["dla_core"] is None
            ):
                return self._root / rec["engine"]
        return None

    def _engine(self, onnx_path: Path) -> tuple[Any, Any]:
        trt = self._trt
        prebuilt = self._prebuilt(onnx_path)
        if prebuilt is not None:
            engine = self._runtime.deserialize_cuda_engine(prebuilt.read_bytes())
            self.engines_used.append(str(prebuilt))
            return engine, engine.create_execution_context()
        tag = f"{self._hashes.get(onnx_path.name, onnx_path.stem)[:16]}.{trt.__version__}.{self._gpu}"
        tag += ".fp16" if self.fp16 else ".fp32"
        cache = Path.home() / ".cache" / "edgerain" / "engines" / (tag.replace(" ", "_").replace("/", "_") + ".engine")
        if cache.is_file():
            engine = self._runtime.deserialize_cuda_engine(cache.read_bytes())
        else:
            log.warning(
                "no prebuilt engine for %s on this GPU: building one (run build_engine.sh to prebuild)", onnx_path.name
            )
            builder = trt.Builder(self._logger)
            network = builder.create_network(0)
            parser = trt.OnnxParser(network, self._logger)
            if not parser.parse(onnx_path.read_bytes()):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise EdgerainError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace)
            if self.fp16:
                config.set_flag(trt.BuilderFlag.FP16)
            profile = builder.create_optimization_profile()
            for i in range(network.num_inputs):
                inp = network.get_input(i)
                lo, opt, hi = _profile_shapes(tuple(inp.shape))
                profile.set_shape(inp.name, lo, opt, hi)
            config.add_optimization_profile(profile)
            blob = builder.build_serialized_network(network, config)
            if blob is None:
                raise EdgerainError(f"TensorRT could not build an engine for {onnx_path.name}")
            # Atomic: a half-written cache from an interrupted run would fail to deserialize on the next.
            with atomic_path(cache) as tmp:
                tmp.write_bytes(bytes(blob))
            engine = self._runtime.deserialize_cuda_engine(blob)
        self.engines_used.append(str(cache))
        return engine, engine.create_execution_context()

    def _run(self, pair: tuple[Any, Any], inputs: list[np.ndarray]) -> np.ndarray:
        trt, torch = self._trt, self._torch
        engine, ctx = pair
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        in_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        out_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        keep = []
        for name, arr in zip(in_names, inputs, strict=True):
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).cuda()
            if not ctx.set_input_shape(name, tuple(t.shape)):
                raise EdgerainError(
                    f"TensorRT engine does not accept {name} of shape {tuple(t.shape)} (outside its shape profile); "
                    "use tiling (tile=...) or an engine built for larger images"
                )
            ctx.set_tensor_address(name, t.data_ptr())
            keep.append(t)
        out = torch.empty(tuple(ctx.get_tensor_shape(out_names[0])), dtype=torch.float32, device="cuda")
        ctx.set_tensor_address(out_names[0], out.data_ptr())
        stream = torch.cuda.current_stream()
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise EdgerainError("TensorRT execution failed")
        stream.synchronize()
        return out.cpu().numpy()

    def context(self, x: np.ndarray) -> np.ndarray:
        assert self.context_engine is not None
        return self._run(self.context_engine, [x])

    def main(self, index: int, x: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        inputs = [x] if context is None else [x, context]
        engine = self.main_engines[index][0]
        n_inputs = sum(
            engine.get_tensor_mode(engine.get_tensor_name(i)) == self._trt.TensorIOMode.INPUT
            for i in range(engine.num_io_tensors)
        )
        return self._run(self.main_engines[index], inputs[:n_inputs])

    def describe(self) -> dict[str, Any]:
        return {"backend": "trt", "tensorrt": self._trt.__version__, "fp16": self.fp16}


def _profile_shapes(shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Min/opt/max shapes for an input with dynamic dims (-1): images from 8x8 up to 2048x2048."""
    if all(d > 0 for d in shape):
        return shape, shape, shape
    if len(shape) == 4:  # image (B, 3, H, W)
        b = shape[0] if shape[0] > 0 else 1
        return (b, shape[1], 8, 8), (b, shape[1], 720, 1280), (b, shape[1], 2048, 2048)
    fixed = tuple(d if d > 0 else 1 for d in shape)
    return fixed, fixed, fixed
