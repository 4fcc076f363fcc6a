"""Limits of the imatrix reader (quantize/imatrix.py), both forms: each an ImatrixError naming the file
and the entry.  Cases marked "bug" failed with a raw ValueError/TypeError before these checks.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from dsv4_gguf.quantize.imatrix import ImatrixError, load_imatrix, load_imatrix_raw
from gguf import GGMLQuantizationType as Q

from dsv4_gguf.gguf_io import KV, TensorEntry, write_plain


def _dat(entries: list[tuple[bytes, int, int, bytes]], n: int | None = None) -> bytes:
    out = struct.pack("<i", len(entries) if n is None else n)
    for name, ncall, nval, vals in entries:
        out += struct.pack("<i", len(name)) + name + struct.pack("<ii", ncall, nval) + vals
    return out


@pytest.mark.parametrize(
    "data, match",
    [
        # bug, fuzz: numpy's "buffer is smaller than requested size" ValueError (atheris, < 10 inputs)
        (_dat([(b"w", 1, 1 << 30, b"\0" * 16)]), r"entry 'w' claims 1073741824 values but the file ends after 4"),
        (_dat([(b"w", 1, 4, b"\0" * 16), (b"w", 1, 4, b"\0" * 16)]), r"duplicate entry 'w'"),
        (_dat([], n=1 << 30), r"entry count 1073741824, limit 1000000"),
        (_dat([(b"w" * 5000, 1, 4, b"\0" * 16)]), r"corrupt entry name length 5000"),
        (_dat([(b"w", 1, 0, b"")]), r"entry 'w' has 0 values"),
    ],
)
def test_legacy_dat_limits(tmp_path, data, match):
    p = tmp_path / "x.dat"
    p.write_bytes(data)
    with pytest.raises(ImatrixError, match=match) as e:
        load_imatrix(p)
    assert str(p) in str(e.value)


def _gguf(tmp_path, kvs, tensors):
    p = tmp_path / "x.imatrix.gguf"
    write_plain(p, kvs, tensors)
    return p


def _pair(name="w", sums=(1, 8), counts=(1, 1)):
    return [
        (TensorEntry(f"{name}.in_sum2", sums, Q.F32), np.ones(sums, np.float32)),
        (TensorEntry(f"{name}.counts", counts, Q.F32), np.ones(counts, np.float32)),
    ]


@pytest.mark.parametrize(
    "kvs, tensors, match",
    [
        # bug: TypeError from list(5)
        ([KV("imatrix.datasets", "u32", 5)], _pair(), r"'imatrix.datasets' must be an array of strings"),
        # bug: ValueError from int('many')
        ([KV("imatrix.chunk_count", "str", "many")], _pair(), r"'imatrix.chunk_count' must be a non-negative integer"),
        ([], _pair(counts=(3, 1)), r"'w.in_sum2' has 8 values, not a whole number of rows for the 3 counts"),
        ([], _pair()[:1], r"'w.in_sum2' has no matching 'w.counts'"),
        (
            [],
            [(TensorEntry("w.in_sum2", (1, 32), Q.Q8_0), np.zeros(34, np.uint8)), _pair()[1]],
            r"'w.in_sum2' is Q8_0; llama-imatrix stores F32",
        ),
    ],
)
def test_gguf_form_limits(tmp_path, kvs, tensors, match):
    p = _gguf(tmp_path, kvs, tensors)
    with pytest.raises(ImatrixError, match=match) as e:
        load_imatrix_raw(p)
    assert str(p) in str(e.value)


def test_gguf_form_reader_errors_are_imatrix_errors(tmp_path):
    """A GGUF-level problem (here: a misaligned tensor offset) surfaces as an ImatrixError naming the file."""
    p = _gguf(tmp_path, [], _pair())
    b = bytearray(p.read_bytes())
    i = b.index(b"w.counts") + len(b"w.counts") + 4 + 16 + 4
    b[i : i + 8] = struct.pack("<Q", 36)
    p.write_bytes(bytes(b))
    with pytest.raises(ImatrixError, match=rf"{p}: tensor 'w.counts' has data offset 36, not a multiple"):
        load_imatrix(p)
