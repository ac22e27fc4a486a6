"""``edgerain.Derainer``: derain images with a bundle (ONNX Runtime / TensorRT) or a PyTorch model.

Every backend runs the same procedure (docs/bundle-format.md): the context graph once on the whole
image (router scores or prior tokens), then the chosen main graph(s) on the padded image or on
overlapping tiles, blended, cropped and clamped.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgerain.bundle import mix_soft, to_uint8
from edgerain.errors import EdgerainError
from edgerain.runtime import imageio
from edgerain.runtime.backends import GraphRunner, OrtRunner, TorchModelRunner, TrtRunner
from edgerain.runtime.processing import run_tiled
from edgerain.runtime.spec import RuntimeSpec, load_spec
from edgerain.tta import self_ensemble, tta_views

log = logging.getLogger("edgerain.runtime")

BACKENDS = ("ort", "trt", "torch")


class Derainer:
    """Derain numpy arrays, PIL images, torch tensors and image files.

    >>> d = Derainer("out/bundle")                 # ONNX Runtime, providers from the manifest
    >>> clean = d(rainy_uint8_hwc)                 # same type, shape and dtype back
    >>> d = Derainer(model="clip-rpn-edge", weights="ckpt.safetensors", backend="torch")

    ``tile``/``overlap`` override the bundle's tiling (``tile=0`` disables it). ``tta`` averages
    over mirrored views (:mod:`edgerain.tta`), with the routing decided once on the unflipped image.
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str] | None = None,
        *,
        backend: str = "ort",
        model: Any = None,
        weights: str | os.PathLike[str] | None = None,
        providers: list[str] | None = None,
        device: str | None = None,
        cuda_graphs: bool = False,
        fp16: bool = False,
        tile: int | None = None,
        overlap: int | None = None,
        threads: int | None = None,
        verify_hashes: bool = True,
        tta: str = "none",
    ) -> None:
        if backend not in BACKENDS:
            raise EdgerainError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
        tta_views(tta)
        self.tta = tta
        self.backend = backend
        self.spec: RuntimeSpec | None = None
        self.runner: GraphRunner
        if backend == "torch":
            if bundle is not None:
                raise EdgerainError(
                    "the torch backend runs a PyTorch model: pass model=/weights= (a bundle holds ONNX graphs; "
                    "run it with backend='ort' or 'trt')"
                )
            net = _resolve_model(model, weights)
            runner = TorchModelRunner(net, device=device, cuda_graphs=cuda_graphs)
            self.runner = runner
            self.pad_multiple = runner.pad_multiple
            self.min_side = int(net.min_side)
            self.context_kind = runner.kind
            self.routing_rule = runner.routing_rule
            self.tile, self.overlap = None, 32
            self.name = getattr(net, "registry_name", type(net).__name__)
        else:
            if bundle is None:
                raise EdgerainError(f"the {backend} backend runs a bundle: pass the bundle folder")
            if model is not None or weights is not None:
                raise EdgerainError("pass either a bundle or model/weights, not both")
            self.spec = spec = load_spec(bundle, verify_hashes=verify_hashes)
            if backend == "ort":
                self.runner = OrtRunner(spec, providers=providers, threads=threads)
            else:
                self.runner = TrtRunner(spec, fp16=fp16)
            self.pad_multiple = spec.pad_multiple
            self.min_side = spec.min_side
            self.context_kind = spec.context_kind
            self.routing_rule = spec.routing_rule
            self.tile, self.overlap = spec.tile, spec.overlap
            self.name = spec.model_name
        if tile is not None:
            self.tile = tile or None
        if overlap is not None:
            self.overlap = overlap
        if self.context_kind == "router" and self.routing_rule not in ("hard-top1", "soft"):
            raise EdgerainError(f"unknown routing rule {self.routing_rule!r} (expected 'hard-top1' or 'soft')")
        self.last_scores: np.ndarray | None = None

    # -- the procedure, on one (1, 3, H, W) float32 image -------------------------------------------
    def run_nchw(self, x: np.ndarray) -> np.ndarray:
        """Derain one image (1, 3, H, W) float32 in [0, 1]; returns the same shape in [0, 1]."""
        if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3:
            raise EdgerainError(f"expected one RGB image (1, 3, H, W), got shape {tuple(x.shape)}")
        if min(x.shape[2:]) < self.min_side:
            # The exported context graph would still return scores here (ONNX pooling pads where
            # PyTorch refuses), so the size the network was built for is checked before running it.
            raise EdgerainError(
                f"{self.name} needs images of at least {self.min_side}x{self.min_side} pixels; "
                f"got {x.shape[3]}x{x.shape[2]}"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        runner = self.runner
        context = runner.context(x) if self.context_kind is not None else None
        self.last_scores = context if self.context_kind == "router" else None

        def on_tiles(index: int, ctx: np.ndarray | None, view: np.ndarray) -> np.ndarray:
            return run_tiled(lambda t: runner.main(index, t, ctx), view, self.pad_multiple, self.tile, self.overlap)

        run: Callable[[np.ndarray], np.ndarray]
        if self.context_kind != "router":
            run = functools.partial(on_tiles, 0, context)
        else:
            assert context is not None
            scores = context.reshape(-1)
            if self.routing_rule == "hard-top1":
                run = functools.partial(on_tiles, int(np.argmax(scores)), None)
            else:
                run = functools.partial(self._soft_mix, scores=scores)
        # Mirrored views share the routing and context decided above on the unflipped image.
        return self_ensemble(run, x, self.tta, lambda a, axes: np.ascontiguousarray(np.flip(a, axes)))

    def _soft_mix(self, x: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Soft routing: every expert runs and their unclamped outputs are mixed by the scores."""
        runner = self.runner

        def mixed(t: np.ndarray) -> np.ndarray:
            return mix_soft((runner.main(e, t, None) for e in range(runner.num_mains)), scores[None])

        return run_tiled(mixed, x, self.pad_multiple, self.tile, self.overlap)

    # -- user-facing entry points ------------------------------------------------------------------
    def __call__(self, image: Any) -> Any:
        return self.derain(image)

    def derain(self, image: Any) -> Any:
        """Derain an image or a batch; the result has the input's type, layout and dtype.

        numpy: (H, W, 3) or (N, H, W, 3), uint8 or float in [0, 1]; PIL images; torch tensors
        (3, H, W) or (N, 3, H, W) in [0, 1]; a path (str / Path) returns a float (H, W, 3) array.
        A list derains each item.
        """
        if isinstance(image, list):
            return [self.derain(item) for item in image]
        if isinstance(image, (str, Path)):
            return self._hwc(imageio.read_rgb(Path(image)))
        if type(image).__module__.startswith("PIL."):
            from PIL import Image

            arr = np.asarray(image.convert("RGB")) if image.mode in ("L", "RGB") else None
            if arr is None:
                raise EdgerainError(f"PIL image mode {image.mode} is not RGB or grayscale")
            return Image.fromarray(to_uint8(self._hwc(arr.astype(np.float32) / 255.0)))
        if type(image).__module__.startswith("torch"):
            return self._tensor(image)
        if isinstance(image, np.ndarray):
            return self._array(image)
        raise EdgerainError(f"cannot derain an object of type {type(image).__name__}")

    def _hwc(self, img: np.ndarray) -> np.ndarray:
        y = self.run_nchw(img.transpose(2, 0, 1)[None])
        return y[0].transpose(1, 2, 0)

    def _array(self, a: np.ndarray) -> np.ndarray:
        if a.ndim not in (3, 4) or a.shape[-1] != 3:
            raise EdgerainError(f"expected an RGB array (H, W, 3) or (N, H, W, 3), got shape {a.shape}")
        if a.dtype == np.uint8:
            f = a.astype(np.float32) / np.float32(255.0)
        elif np.issubdtype(a.dtype, np.floating):
            f = a.astype(np.float32)
        else:
            raise EdgerainError(f"expected uint8 or float pixels, got {a.dtype}")
        out = self._hwc(f) if a.ndim == 3 else np.stack([self._hwc(img) for img in f])
        return to_uint8(out) if a.dtype == np.uint8 else out.astype(a.dtype)

    def _tensor(self, t: Any) -> Any:
        import torch

        if t.dim() not in (3, 4) or t.shape[-3] != 3:
            raise EdgerainError(f"expected an RGB tensor (3, H, W) or (N, 3, H, W), got shape {tuple(t.shape)}")
        batch = t[None] if t.dim() == 3 else t
        arr = batch.detach().float().cpu().numpy()
        out = np.concatenate([self.run_nchw(arr[i : i + 1]) for i in range(arr.shape[0])])
        res = torch.from_numpy(out).to(device=t.device, dtype=t.dtype)
        return res[0] if t.dim() == 3 else res

    def derain_file(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
        """Derain an image file into an 8-bit image file (written atomically)."""
        out = to_uint8(self._hwc(imageio.read_rgb(Path(src))))
        return imageio.write_rgb(Path(dst), out)

    def describe(self) -> dict[str, Any]:
        info = {"model": self.name, "pad_multiple": self.pad_multiple, "tile": self.tile, "overlap": self.overlap}
        info["tta"] = self.tta
        info["context"] = self.context_kind
        info["routing"] = self.routing_rule
        return {**info, **self.runner.describe()}


def _resolve_model(model: Any, weights: str | os.PathLike[str] | None) -> Any:
    """A DerainModel instance, or a registry name / checkpoint resolved like ``edgerain.api.load_model``."""
    if model is not None and not isinstance(model, str):
        if weights is not None:
            raise EdgerainError("pass weights with a model name, not with a model instance")
        return model
    from edgerain.api import load_model

    return load_model(model, weights)


def derain_paths_with_bundle(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    bundle: str | os.PathLike[str],
    backend: str = "ort",
    tile: int | None = None,
    overlap: int | None = None,
    progress: bool = True,
    tta: str = "none",
) -> list[Path]:
    """Derain image files and folders with a bundle into ``out_dir`` (PNG, same stem); returns the outputs.

    What ``edgerain derain --bundle DIR`` calls. It shares ``edgerain derain``'s file handling
    (:mod:`edgerain.pipeline`: every input checked and every output name claimed before anything
    runs, EXIF orientation, atomic writes), so it needs the full package; on a device,
    :meth:`Derainer.derain_file` needs only numpy, Pillow and onnxruntime.
    """
    import torch

    from edgerain.data.io import load_image
    from edgerain.pipeline import check_tiling, plan_outputs, run_jobs

    if tile:
        check_tiling(tile, overlap if overlap is not None else 32)
    jobs = plan_outputs(inputs, out_dir)  # fail on bad inputs before any session is built
    derainer = Derainer(bundle, backend=backend, tile=tile, overlap=overlap, tta=tta)

    def one(src: Path) -> torch.Tensor:
        x = load_image(src).transpose(2, 0, 1)[None]
        return torch.from_numpy(derainer.run_nchw(x))

    return run_jobs(jobs, one, progress)
