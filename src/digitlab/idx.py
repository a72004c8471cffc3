"""The IDX file format that MNIST is published in: parse and write, with header checks.

An IDX file is two zero bytes, a dtype code, the number of dimensions, one big-endian uint32
per dimension, then the data in C order (big-endian for multi-byte types). Files are often
gzipped; :func:`parse_idx` accepts both.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDXError", "parse_idx", "read_idx", "to_idx"]

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder(">"): code for code, dtype in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
# The largest MNIST file is 47 MB unpacked; anything far beyond that is not a digit set
# and must not be allowed to inflate without bound (a gzip bomb).
MAX_UNPACKED_BYTES = 256 * 2**20


class IDXError(ValueError):
    """The bytes are not a well-formed IDX file; the message says why."""


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise IDXError(f"corrupt gzip data ({exc})") from None
    if len(out) > max_bytes:
        raise IDXError(f"unpacks to more than {max_bytes} bytes")
    if not inflater.eof:
        raise IDXError("truncated gzip data")
    return out


def parse_idx(data: bytes, max_bytes: int = MAX_UNPACKED_BYTES) -> np.ndarray:
    """Parse IDX bytes (raw or gzipped) into an array of the declared shape and dtype.

    Raises :class:`IDXError` for a wrong magic, an unknown dtype code, or a body whose length
    is not exactly what the header declares (truncated or with trailing bytes).
    """
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip(data, max_bytes)
    if len(data) < 4:
        raise IDXError(f"too short for an IDX header ({len(data)} bytes)")
    if data[:2] != b"\0\0":
        raise IDXError(f"wrong magic: starts with {data[:4].hex()}, expected 0000xxyy")
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        raise IDXError(f"unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise IDXError("IDX header declares zero dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IDXError(f"header declares {ndim} dimensions but the file ends at {len(data)} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(data) - header_len
    if body != expected:
        what = "truncated" if body < expected else "has trailing bytes"
        raise IDXError(f"{what}: header declares shape {shape} ({expected} bytes), {body} follow")
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path, max_bytes: int = MAX_UNPACKED_BYTES) -> np.ndarray:
    """Read and parse an IDX file (raw or ``.gz``); see :func:`parse_idx`."""
    path = Path(path)
    try:
        return parse_idx(path.read_bytes(), max_bytes)
    except IDXError as exc:
        raise IDXError(f"{path.name}: {exc}") from None


def to_idx(array: np.ndarray) -> bytes:
    """Serialise an array to raw IDX bytes, the inverse of :func:`parse_idx`."""
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if big not in _CODES:
        raise IDXError(f"dtype {array.dtype} has no IDX code")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, _CODES[big], array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=big).tobytes()
