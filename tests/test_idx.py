import gzip
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from digitlab.idx import IDXError, parse_idx, read_idx, to_idx


def header(code: int, *dims: int) -> bytes:
    return struct.pack(f">BBBB{len(dims)}I", 0, 0, code, len(dims), *dims)


def test_parses_uint8_images():
    data = header(0x08, 2, 2, 3) + bytes(range(12))
    out = parse_idx(data)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[1, 1, 2] == 11


def test_parses_big_endian_int32_to_native():
    data = header(0x0C, 3) + struct.pack(">3i", 1, -2, 70000)
    out = parse_idx(data)
    assert out.tolist() == [1, -2, 70000]
    assert out.dtype.isnative


def test_parses_gzipped(tmp_path):
    data = header(0x08, 4) + b"\x01\x02\x03\x04"
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(data))
    assert read_idx(path).tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("data, reason", [
    (header(0x08, 2, 3) + bytes(5), "truncated"),
    (header(0x08, 2, 3) + bytes(7), "trailing bytes"),
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "wrong magic"),
    (header(0x07, 1) + b"\x00", "unknown IDX dtype"),
    (b"\x00\x00", "too short"),
    (b"\x00\x00\x08\x03\x00\x00", "ends at"),
    (b"\x00\x00\x08\x00", "zero dimensions"),
    (gzip.compress(header(0x08, 4) + bytes(4))[:-9], "truncated gzip"),
    (b"\x1f\x8b" + b"garbage" * 3, "corrupt gzip"),
])
def test_rejects_malformed_bytes(data, reason):
    with pytest.raises(IDXError, match=reason):
        parse_idx(data)


def test_read_idx_names_the_file(tmp_path):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(header(0x08, 10) + bytes(3))
    with pytest.raises(IDXError, match="broken-idx1-ubyte: truncated"):
        read_idx(path)


def test_gzip_bomb_is_refused():
    bomb = gzip.compress(header(0x08, 10_000_000) + bytes(10_000_000))
    with pytest.raises(IDXError, match="more than"):
        parse_idx(bomb, max_bytes=1_000_000)


def test_to_idx_matches_the_published_layout():
    assert to_idx(np.array([[1, 2]], dtype=np.uint8)) == header(0x08, 1, 2) + b"\x01\x02"
    with pytest.raises(IDXError, match="no IDX code"):
        to_idx(np.zeros(3, dtype=np.uint16))


@given(arrays(st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
              st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)))
def test_round_trip(array):
    back = parse_idx(to_idx(array))
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
