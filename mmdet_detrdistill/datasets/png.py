"""A minimal, deterministic PNG writer (no PIL/OpenCV): same pixels, same bytes."""

import struct
import zlib

import numpy as np


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', crc)


def encode_png(img: np.ndarray) -> bytes:
    """Encode an ``HxWx3`` uint8 RGB image as a deterministic PNG byte string."""
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, img.shape
    h, w = img.shape[:2]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, w * 3)], axis=1)
    header = struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b'\x89PNG\r\n\x1a\n'
        + _png_chunk(b'IHDR', header)
        + _png_chunk(b'IDAT', zlib.compress(rows.tobytes(), 6))
        + _png_chunk(b'IEND', b'')
    )
