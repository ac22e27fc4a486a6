"""Helpers for the data tests: a 16-bit PNG encoder exercising every row filter and Adam7.

No library in our dependency set writes 16-bit colour PNGs, so the tests encode them here, straight
from the PNG specification (filters are computed from the original bytes, which is vectorisable).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

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


@pytest.fixture
def encode_png16():
    return png16_bytes
