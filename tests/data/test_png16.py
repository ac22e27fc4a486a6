"""The 16-bit PNG decoder: every filter type, Adam7, all colour types; cross-checked against Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edgerain.data.png16 import PNGDecodeError, decode_png16


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_decode_round_trips_every_filter(encode_png16, rng, channels, interlace):
    # 13 x 11 is not a multiple of 8, so Adam7 passes have ragged sizes; 13 rows cycle all 5 filters.
    arr = rng.integers(0, 65536, (13, 11, channels), dtype=np.uint16)
    for first_filter in range(5):
        data = encode_png16(arr, interlace=interlace, first_filter=first_filter)
        np.testing.assert_array_equal(decode_png16(data), arr)


def test_high_bytes_agree_with_pillow(encode_png16, rng):
    # Pillow decodes 16-bit RGB to 8 bits by keeping the high byte: an independent decoder to compare with.
    arr = rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16)
    data = encode_png16(arr, first_filter=3)
    pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(decode_png16(data) >> 8, pil)


def test_grayscale_agrees_with_pillow_writer(rng):
    # A 16-bit grayscale PNG written by Pillow (its own encoder and filter choices).
    arr = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_png16(buf.getvalue())[..., 0], arr)


def test_tiny_images(encode_png16):
    for shape in [(1, 1, 3), (1, 9, 3), (9, 1, 4)]:
        arr = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape) * 1000
        for interlace in (False, True):
            np.testing.assert_array_equal(decode_png16(encode_png16(arr, interlace=interlace)), arr)


def test_truncated_and_corrupt(encode_png16, rng):
    data = encode_png16(rng.integers(0, 65536, (8, 8, 3), dtype=np.uint16))
    with pytest.raises(PNGDecodeError, match="truncated"):
        decode_png16(data[: len(data) - 30])
    corrupt = bytearray(data)
    corrupt[40] ^= 0xFF  # inside IDAT: the CRC no longer matches
    with pytest.raises(PNGDecodeError, match="CRC"):
        decode_png16(bytes(corrupt))
    with pytest.raises(PNGDecodeError, match="not a PNG"):
        decode_png16(b"GIF89a" + bytes(40))
