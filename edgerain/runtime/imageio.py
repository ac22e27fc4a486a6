"""Image files for the runtime: 8-bit RGB or grayscale in, 8-bit RGB PNG out.

Kept apart from ``edgerain.data`` so a device needs only numpy and Pillow. The rules match the C++
runtime's: grayscale becomes RGB, an alpha channel is refused (there is no right way to guess the
background), 16-bit images are not accepted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgerain.errors import EdgerainError
from edgerain.utils import atomic_path


def read_rgb(path: Path) -> np.ndarray:
    """Decode to float32 (H, W, 3) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            has_alpha = "A" in mode or (mode == "P" and "transparency" in im.info)
            if has_alpha:
                raise EdgerainError(f"{path}: image has an alpha channel ({mode}); edgerain expects RGB or grayscale")
            if mode not in ("1", "L", "P", "RGB"):
                raise EdgerainError(f"{path}: unsupported pixel format {mode}; edgerain expects 8-bit RGB or grayscale")
            arr = np.asarray(im.convert("RGB"))
    except (FileNotFoundError, IsADirectoryError):
        raise EdgerainError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise EdgerainError(f"{path}: cannot decode image ({exc.__class__.__name__})") from None
    return arr.astype(np.float32) / np.float32(255.0)


def write_rgb(path: Path, array_u8: np.ndarray) -> Path:
    """Encode (H, W, 3) uint8 atomically; the format follows the suffix (PNG when unknown)."""
    from PIL import Image

    suffix = path.suffix.lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}.get(suffix, "PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(array_u8, mode="RGB").save(tmp, format=fmt)
    return path
