"""Image width and height from the file header, without decoding the pixels.

The server checks the decoded size of an upload before it decodes it: a few KB of PNG can
claim 12000x12000 pixels (432 MB once decoded). :func:`image_size` reads only the header of
PNG (IHDR), JPEG (the SOF marker), BMP, WebP (VP8, VP8L, VP8X) and TIFF (first IFD) -- the
formats OpenCV decodes here -- and raises :class:`ImageHeaderError` for anything else.
"""

from __future__ import annotations

import struct
from typing import Tuple

__all__ = ["ImageHeaderError", "image_size", "FORMATS"]

FORMATS = ("PNG", "JPEG", "BMP", "WebP", "TIFF")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])


class ImageHeaderError(ValueError):
    """The bytes are not a supported image, or its header is truncated or inconsistent."""


def _unpack(fmt: str, data: bytes, offset: int) -> tuple:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise ImageHeaderError("truncated image header") from None


def _png(data: bytes) -> Tuple[int, int]:
    length, kind, width, height = _unpack(">I4sII", data, 8)
    if kind != b"IHDR" or length != 13:
        raise ImageHeaderError("PNG without an IHDR chunk first")
    return width, height


def _jpeg(data: bytes) -> Tuple[int, int]:
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ImageHeaderError(f"JPEG: no marker at byte {pos}")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(data):
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            raise ImageHeaderError("JPEG without a frame header (SOF) before its scan")
        (length,) = _unpack(">H", data, pos)
        if marker in _SOF_MARKERS:
            height, width = _unpack(">HH", data, pos + 3)
            return width, height
        if length < 2:
            raise ImageHeaderError("JPEG: segment length below 2")
        pos += length
    raise ImageHeaderError("truncated JPEG header: no frame header (SOF)")


def _bmp(data: bytes) -> Tuple[int, int]:
    (dib_size,) = _unpack("<I", data, 14)
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER
        return _unpack("<HH", data, 18)
    width, height = _unpack("<ii", data, 18)
    return width, abs(height)  # negative height = top-down rows


def _webp(data: bytes) -> Tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ImageHeaderError("WebP VP8: bad frame signature")
        width, height = _unpack("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20:21] != b"\x2f":
            raise ImageHeaderError("WebP VP8L: bad signature")
        (bits,) = _unpack("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        raw = data[24:30]
        if len(raw) < 6:
            raise ImageHeaderError("truncated image header")
        return int.from_bytes(raw[:3], "little") + 1, int.from_bytes(raw[3:], "little") + 1
    raise ImageHeaderError(f"WebP with an unknown first chunk {chunk!r}")


def _tiff(data: bytes) -> Tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = _unpack(order + "I", data, 4)
    (count,) = _unpack(order + "H", data, ifd)
    found = {}
    for i in range(min(count, 4096)):
        tag, kind, _n = _unpack(order + "HHI", data, ifd + 2 + 12 * i)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            fmt = {3: "H", 4: "I"}.get(kind)
            if fmt is None:
                raise ImageHeaderError("TIFF: width/height of an unexpected type")
            found[tag] = _unpack(order + fmt, data, ifd + 2 + 12 * i + 8)[0]
    if 256 not in found or 257 not in found:
        raise ImageHeaderError("TIFF without ImageWidth/ImageLength in its first IFD")
    return found[256], found[257]


def image_size(data: bytes) -> Tuple[int, int]:
    """(width, height) read from the header of a PNG, JPEG, BMP, WebP or TIFF file."""
    if data.startswith(_PNG_SIGNATURE):
        width, height = _png(data)
    elif data.startswith(b"\xff\xd8"):
        width, height = _jpeg(data)
    elif data.startswith(b"BM"):
        width, height = _bmp(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        width, height = _webp(data)
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        width, height = _tiff(data)
    else:
        raise ImageHeaderError(f"not an image this server reads ({', '.join(FORMATS)})")
    if width <= 0 or height <= 0:
        raise ImageHeaderError(f"image header gives a size of {width}x{height}")
    return int(width), int(height)
