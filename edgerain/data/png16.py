"""A decoder for 16-bit-per-channel PNG files that keeps all 16 bits.

Pillow opens 16-bit RGB and RGBA PNGs as 8-bit images (it drops the low byte), and no other image
library in our dependency set does better, so edgerain reads such files itself. This follows the PNG
specification (ISO/IEC 15948): chunk CRCs, zlib-compressed IDAT stream, the five per-row filters and
Adam7 interlacing. Only bit depth 16 is handled here; every other PNG goes through Pillow.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Colour type -> channels for bit depth 16 (3, palette, is never 16-bit).
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
# Adam7 passes: (x start, y start, x step, y step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


class PNGDecodeError(ValueError):
    """The file is not a well-formed PNG (truncated, corrupt, or an unsupported variant)."""


def png_header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """``(width, height, bit_depth, colour_type, interlace)`` of PNG bytes, or None if not a PNG."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _comp, _filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace


def is_16bit_png(path: Path) -> bool:
    with open(path, "rb") as f:
        head = png_header(f.read(33))
    return head is not None and head[2] == 16


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks = []
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise PNGDecodeError("truncated PNG (the IEND chunk is missing)")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise PNGDecodeError(f"truncated PNG (the {kind.decode('latin-1')} chunk is cut short)")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise PNGDecodeError(f"corrupt PNG (CRC mismatch in the {kind.decode('latin-1')} chunk)")
        chunks.append((kind, body))
        pos = end
        if kind == b"IEND":
            return chunks


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: memoryview, pos: int, width: int, height: int, bpp: int) -> tuple[np.ndarray, int]:
    """Undo the per-row filters of one (sub-)image starting at ``raw[pos]``; returns bytes (H, W*bpp)."""
    stride = width * bpp
    out = np.zeros((height, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        if pos + 1 + stride > len(raw):
            raise PNGDecodeError("truncated PNG (image data ends early)")
        kind = raw[pos]
        line = np.frombuffer(raw[pos + 1 : pos + 1 + stride], dtype=np.uint8)
        pos += 1 + stride
        if kind == 0:
            row = line.copy()
        elif kind == 1:  # Sub: a running sum per byte lane, modulo 256
            row = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint64).astype(np.uint8).reshape(-1)
        elif kind == 2:  # Up
            row = line + prior
        elif kind in (3, 4):  # Average, Paeth: each byte depends on the reconstructed left byte
            recon = bytearray(stride)
            lb, pb = line.tobytes(), prior.tobytes()
            for i in range(stride):
                left = recon[i - bpp] if i >= bpp else 0
                if kind == 3:
                    pred = (left + pb[i]) >> 1
                else:
                    pred = _paeth(left, pb[i], pb[i - bpp] if i >= bpp else 0)
                recon[i] = (lb[i] + pred) & 0xFF
            row = np.frombuffer(bytes(recon), dtype=np.uint8)
        else:
            raise PNGDecodeError(f"corrupt PNG (unknown row filter {kind})")
        out[y] = row
        prior = row
    return out, pos


def decode_png16(data: bytes) -> np.ndarray:
    """Decode 16-bit PNG bytes to a uint16 array (H, W, C), C = 1 (gray), 2 (gray+alpha), 3 or 4."""
    head = png_header(data)
    if head is None:
        raise PNGDecodeError("not a PNG file")
    width, height, depth, colour, interlace = head
    if depth != 16 or colour not in _CHANNELS:
        raise PNGDecodeError(f"not a 16-bit PNG (bit depth {depth}, colour type {colour})")
    if width == 0 or height == 0:
        raise PNGDecodeError("PNG with zero width or height")
    chunks = _chunks(data)
    idat = b"".join(body for kind, body in chunks if kind == b"IDAT")
    if not idat:
        raise PNGDecodeError("PNG without image data")
    try:
        raw = memoryview(zlib.decompress(idat))
    except zlib.error as exc:
        raise PNGDecodeError(f"corrupt PNG image data ({exc})") from None
    channels = _CHANNELS[colour]
    bpp = 2 * channels
    image = np.zeros((height, width * bpp), dtype=np.uint8)
    if interlace == 0:
        image, _ = _unfilter(raw, 0, width, height, bpp)
    elif interlace == 1:
        pos = 0
        pixels = image.reshape(height, width, bpp)
        for x0, y0, dx, dy in _ADAM7:
            pw, ph = max(0, (width - x0 + dx - 1) // dx), max(0, (height - y0 + dy - 1) // dy)
            if pw == 0 or ph == 0:
                continue
            sub, pos = _unfilter(raw, pos, pw, ph, bpp)
            pixels[y0::dy, x0::dx] = sub.reshape(ph, pw, bpp)
    else:
        raise PNGDecodeError(f"unknown PNG interlace method {interlace}")
    return image.reshape(height, width, bpp).view(">u2").astype(np.uint16)
