"""Reading and writing images: the one place where files become float RGB arrays and back.

Convention (shared with the bundle format): RGB float32 in [0, 1], shape (H, W, 3) as numpy or
(1, 3, H, W) as torch; 8-bit output rounds half up. Everything a user is likely to hand us is
converted: 16-bit PNG (all 16 bits kept), grayscale (replicated to RGB), images with alpha (alpha
dropped, with a warning), palette images, 1x1 images. Anything that cannot be read is an
:class:`~edgerain.errors.EdgerainError` with a one-line message naming the file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile

from edgerain.data.png16 import PNGDecodeError, decode_png16, is_16bit_png
from edgerain.errors import EdgerainError
from edgerain.utils import atomic_path

if TYPE_CHECKING:
    import torch

# Suffix -> Pillow format for writing; the same suffixes are what folders are scanned for.
IMAGE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
IMAGE_SUFFIXES = tuple(IMAGE_FORMATS)

_pil_lock = threading.Lock()
_alpha_warned = False


class AlphaDroppedWarning(UserWarning):
    """An input image had an alpha channel; edgerain works on RGB and ignores it."""


@contextlib.contextmanager
def _strict_pil() -> Iterator[None]:
    # A process-wide ImageFile.LOAD_TRUNCATED_IMAGES = True (set by some other library) would make
    # Pillow pad a truncated file with grey instead of failing: force strict decoding here.
    with _pil_lock:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _check_file(path: Path) -> None:
    if not path.exists():
        raise EdgerainError(f"image {path} does not exist")
    if path.is_dir():
        raise EdgerainError(f"{path} is a folder, not an image file")
    if not os.access(path, os.R_OK):
        raise EdgerainError(f"image {path} is not readable (permission denied)")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")


def _warn_alpha(path: Path) -> None:
    global _alpha_warned
    if not _alpha_warned:
        _alpha_warned = True
        warnings.warn(
            f"{path} has an alpha channel: it is ignored (edgerain works on RGB; further images with "
            "alpha are not reported)",
            AlphaDroppedWarning,
            stacklevel=3,
        )


def _to_rgb(channels: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, C) float in [0, 1] with C = 1, 2, 3 or 4 -> (H, W, 3)."""
    c = channels.shape[2]
    if c in (2, 4):
        _warn_alpha(path)
        channels = channels[..., : c - 1]
    if channels.shape[2] == 1:
        channels = np.repeat(channels, 3, axis=2)
    return np.ascontiguousarray(channels, dtype=np.float32)


def _pil_to_array(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return _to_rgb((np.asarray(img, dtype=np.float64) / 65535.0)[..., None], path)
    if mode == "I":
        # 32-bit integer images (some TIFFs) have no agreed white level: refuse rather than guess.
        raise EdgerainError(f"{path} is a 32-bit integer image; convert it to 8 or 16 bits per channel")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise EdgerainError(f"{path} is a floating-point image with values outside [0, 1]")
        return _to_rgb(arr[..., None], path)
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA" if ("transparency" in img.info or mode == "PA") else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX...
    arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    if arr.ndim == 2:
        arr = arr[..., None]
    return _to_rgb(arr, path)


def _is_16bit_colour_tiff(img: Image.Image) -> bool:
    # Pillow decodes 16-bit RGB(A) TIFFs to 8 bits; tifffile (a scikit-image dependency) keeps all 16.
    if img.format != "TIFF" or img.mode not in ("RGB", "RGBA"):
        return False
    bits = img.tag_v2.get(258, (8,))  # type: ignore[attr-defined]
    return 16 in (bits if isinstance(bits, tuple) else (bits,))


def _load_tiff_16bit(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        arr = page.asarray()  # type: ignore[union-attr]
        if page.planarconfig == 2:  # type: ignore[union-attr]  # separate planes: (C, H, W)
            arr = np.moveaxis(arr, 0, -1)
    if arr.dtype != np.uint16 or arr.ndim != 3:
        raise EdgerainError(f"{path}: unsupported 16-bit TIFF layout {arr.dtype} {arr.shape}")
    return arr.astype(np.float64) / 65535.0


_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # an unreadable EXIF block is no reason to refuse the pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels (H, W, C) upright as the EXIF orientation tag says (as cameras and viewers do)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as RGB float32 (H, W, 3) in [0, 1], upright; one-line EdgerainError if it cannot."""
    path = Path(path)
    _check_file(path)
    try:
        with _strict_pil(), Image.open(path) as img:
            if is_16bit_png(path):
                try:
                    data = decode_png16(path.read_bytes())
                except PNGDecodeError as exc:
                    raise EdgerainError(f"cannot read image {path}: {_describe(exc)}") from None
                arr = _to_rgb(data.astype(np.float64) / 65535.0, path)
            else:
                img.load()  # decode now: truncation and corruption surface here, not later
                arr = _to_rgb(_load_tiff_16bit(path), path) if _is_16bit_colour_tiff(img) else _pil_to_array(img, path)
            return _apply_orientation(arr, _orientation(img))
    except EdgerainError:
        raise
    except Image.UnidentifiedImageError:
        raise EdgerainError(f"{path} is not an image file (or not in a format edgerain can read)") from None
    except Image.DecompressionBombError as exc:
        raise EdgerainError(f"image {path} is too large to open safely ({_describe(exc)})") from None
    except MemoryError:
        raise EdgerainError(f"image {path} is too large for the available memory") from None
    except Exception as exc:  # any decoder failure on a user's file: truncated, corrupt, unsupported
        raise EdgerainError(f"cannot read image {path}: {_describe(exc)}") from None


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of the upright image (as :func:`load_image` returns it), from the header only."""
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            return (h, w) if _orientation(img) in _TRANSPOSED else (w, h)
    except Image.UnidentifiedImageError:
        raise EdgerainError(f"{path} is not an image file (or not in a format edgerain can read)") from None
    except Exception as exc:
        raise EdgerainError(f"cannot read image {path}: {_describe(exc)}") from None


def load_image_tensor(path: str | os.PathLike[str]) -> torch.Tensor:
    """:func:`load_image` as a torch batch (1, 3, H, W)."""
    import torch

    return torch.from_numpy(load_image(path)).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Encode an RGB image in [0, 1] as uint8 (H, W, 3): clamp, then round half up.

    Accepts numpy (H, W, 3) or torch (3, H, W) / (1, 3, H, W); uint8 numpy input passes through.
    """
    if not isinstance(image, np.ndarray):
        import torch

        t = image.detach().cpu()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected a single image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) or (1, 3, H, W) tensor, got {tuple(t.shape)}")
        image = t.permute(1, 2, 0).to(torch.float64).numpy()
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) array, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    return np.floor(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def quantize_8bit(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """What an image becomes once saved as 8 bits and read back: float32 (H, W, 3) on the 1/255 grid."""
    return to_uint8(image).astype(np.float32) / np.float32(255.0)


def output_format(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise EdgerainError(
            f"cannot write {path}: unknown image suffix '{suffix}' (use one of {', '.join(IMAGE_SUFFIXES)})"
        )
    return IMAGE_FORMATS[suffix]


def save_image(path: str | os.PathLike[str], image: np.ndarray | torch.Tensor) -> Path:
    """Write an RGB image (8 bits per channel) atomically; the format follows the file suffix."""
    path = Path(path)
    fmt = output_format(path)
    pixels = to_uint8(image)
    options = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    with atomic_path(path) as tmp:
        Image.fromarray(pixels, mode="RGB").save(tmp, format=fmt, **options)
    return path


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive, hidden files skipped), sorted by name."""
    try:
        return sorted((p for p in folder.iterdir() if p.is_file() and is_image_name(p)), key=lambda p: p.name)
    except OSError as exc:
        raise EdgerainError(f"cannot list folder {folder}: {exc.strerror or _describe(exc)}") from None


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given and the images inside folders, in order, without duplicates.

    A missing path or a folder without images is an EdgerainError (a file given by name is kept
    whatever its suffix: reading it will say whether it is an image).
    """
    out: list[Path] = []
    seen: set[Path] = set()
    given = [Path(p) for p in paths]
    if not given:
        raise EdgerainError("no input images given")
    for p in given:
        if not p.exists():
            raise EdgerainError(f"input {p} does not exist")
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise EdgerainError(f"folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        else:
            found = [p]
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder; on success move its entries into ``target`` (created if needed).

    Each entry replaces the entry of the same name in ``target`` with one rename, so a reader never
    sees half-written files, other entries of ``target`` are left alone, and nothing at all appears
    if the block fails.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise EdgerainError(f"output {target} exists and is not a folder")
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        yield staging
        target.mkdir(exist_ok=True)
        for entry in sorted(staging.iterdir()):
            dest = target / entry.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(entry, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
