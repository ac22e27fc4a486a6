"""The 16-bit PNG decoder: every filter type, Adam7, all colour types; cross-checked against Pillow.

No library in our dependency set writes 16-bit colour PNGs, so the tests encode them here, straight
from the PNG specification (filters are computed from the original bytes, which is vectorisable).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from edgerain.data.io import load_image
from edgerain.data.png16 import PNGDecodeError, decode_png16
from edgerain.errors import EdgerainError

ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    a, b, c = (v.astype(np.int16) for v in (a, b, c))
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)


def _filter_rows(rows: np.ndarray, bpp: int, first_filter: int) -> bytes:
    """Filter (H, stride) uint8 rows, cycling the filter type per row starting at ``first_filter``."""
    out = bytearray()
    prior = np.zeros(rows.shape[1], dtype=np.uint8)
    for y, row in enumerate(rows):
        kind = (first_filter + y) % 5
        left = np.concatenate([np.zeros(bpp, np.uint8), row[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.uint8), prior[:-bpp]])
        pred = {
            0: np.zeros_like(row),
            1: left,
            2: prior,
            3: ((left.astype(np.uint16) + prior) // 2).astype(np.uint8),
            4: _paeth(left, prior, up_left),
        }[kind]
        out += bytes([kind]) + (row - pred).astype(np.uint8).tobytes()
        prior = row
    return bytes(out)


def png16_bytes(array: np.ndarray, interlace: bool = False, first_filter: int = 0) -> bytes:
    """Encode uint16 (H, W) or (H, W, C) with C in 1..4 as a 16-bit PNG."""
    arr = array if array.ndim == 3 else array[..., None]
    h, w, c = arr.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw_pixels = arr.astype(">u2").view(np.uint8).reshape(h, w, 2 * c)
    if not interlace:
        raw = _filter_rows(raw_pixels.reshape(h, -1), 2 * c, first_filter)
    else:
        raw = b"".join(
            _filter_rows(
                np.ascontiguousarray(raw_pixels[y0::dy, x0::dx]).reshape(len(range(y0, h, dy)), -1),
                2 * c,
                first_filter + i,
            )
            for i, (x0, y0, dx, dy) in enumerate(ADAM7)
            if x0 < w and y0 < h
        )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, int(interlace))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_decode_round_trips_every_filter(rng, channels, interlace):
    # 13 x 11 is not a multiple of 8, so Adam7 passes have ragged sizes; 13 rows cycle all 5 filters.
    arr = rng.integers(0, 65536, (13, 11, channels), dtype=np.uint16)
    for first_filter in range(5):
        data = png16_bytes(arr, interlace=interlace, first_filter=first_filter)
        np.testing.assert_array_equal(decode_png16(data), arr)


def test_high_bytes_agree_with_pillow(rng):
    # Pillow decodes 16-bit RGB to 8 bits by keeping the high byte: an independent decoder to compare with.
    arr = rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16)
    data = png16_bytes(arr, first_filter=3)
    pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(decode_png16(data) >> 8, pil)


def test_grayscale_agrees_with_pillow_writer(rng):
    # A 16-bit grayscale PNG written by Pillow (its own encoder and filter choices).
    arr = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_png16(buf.getvalue())[..., 0], arr)


def test_tiny_images():
    for shape in [(1, 1, 3), (1, 9, 3), (9, 1, 4)]:
        arr = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape) * 1000
        for interlace in (False, True):
            np.testing.assert_array_equal(decode_png16(png16_bytes(arr, interlace=interlace)), arr)


def test_truncated_and_corrupt(rng):
    data = png16_bytes(rng.integers(0, 65536, (8, 8, 3), dtype=np.uint16))
    with pytest.raises(PNGDecodeError, match="truncated"):
        decode_png16(data[: len(data) - 30])
    corrupt = bytearray(data)
    corrupt[40] ^= 0xFF  # inside IDAT: the CRC no longer matches
    with pytest.raises(PNGDecodeError, match="CRC"):
        decode_png16(bytes(corrupt))
    with pytest.raises(PNGDecodeError, match="not a PNG"):
        decode_png16(b"GIF89a" + bytes(40))


def test_load_image_keeps_16_bits(tmp_path, rng):
    arr = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    (tmp_path / "c16.png").write_bytes(png16_bytes(arr, first_filter=4))
    img = load_image(tmp_path / "c16.png")
    np.testing.assert_allclose(img, arr / 65535.0, atol=1e-7)
    assert np.abs(img * 255 - np.round(img * 255)).max() > 0.01  # more than 8 bits survived
    (tmp_path / "cut.png").write_bytes(png16_bytes(arr)[:-30])
    with pytest.raises(EdgerainError, match=r"cut\.png.*truncated"):
        load_image(tmp_path / "cut.png")
