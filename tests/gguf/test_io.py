"""GGUF writer/reader round trip, agreement with the `gguf` package, split naming, malformed files rejected."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from dsv4_gguf.gguf_io import KV, GGUFError, GGUFFile, TensorEntry, encode_header, split_paths, write_plain


def _sample(path: Path) -> dict:
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((3, 64), dtype=np.float32)
    i32 = np.arange(12, dtype=np.int32).reshape(2, 6)
    from dsv4_gguf import quants

    q8 = quants.quantize(rng.standard_normal((4, 64), dtype=np.float32), Q.Q8_0)
    kvs = [
        KV("general.architecture", "str", "deepseek4"),
        KV("a.u32", "u32", 7),
        KV("a.i32", "i32", -7),
        KV("a.f32", "f32", 0.5),
        KV("a.bool", "bool", True),
        KV("a.u16", "u16", 3),
        KV("a.u64", "u64", 2**40),
        KV("a.arr_i", "i32[]", [0, 4, 128]),
        KV("a.arr_f", "f32[]", [10.0, 10.0]),
        KV("a.arr_s", "str[]", ["x", "ÿ", ""]),
        KV("a.s", "str", "héllo"),
    ]
    tens = [
        (TensorEntry("t.f32", (3, 64), Q.F32), f32),
        (TensorEntry("t.i32", (2, 6), Q.I32), i32),
        (TensorEntry("t.q8", (4, 64), Q.Q8_0), q8),
    ]
    write_plain(path, kvs, tens)
    return {"f32": f32, "i32": i32, "q8": q8}


def test_round_trip_and_gguf_package(tmp_path):
    import gguf

    p = tmp_path / "a.gguf"
    data = _sample(p)
    f = GGUFFile(p)
    assert f.metadata["a.u32"] == 7 and f.metadata["a.i32"] == -7 and f.metadata["a.bool"] is True
    assert f.metadata["a.arr_i"] == [0, 4, 128] and f.metadata["a.arr_s"] == ["x", "ÿ", ""]
    assert f.kv_types["a.u32"] == gguf.GGUFValueType.UINT32 and f.kv_types["a.i32"] == gguf.GGUFValueType.INT32
    np.testing.assert_array_equal(f.raw("t.f32"), data["f32"])
    np.testing.assert_array_equal(f.raw("t.i32"), data["i32"])
    np.testing.assert_array_equal(f.raw("t.q8"), data["q8"])
    assert f.raw("t.f32").flags.writeable is False  # zero-copy view of the map
    r = gguf.GGUFReader(p)
    assert r.fields["a.s"].contents() == "héllo" and r.fields["a.arr_f"].contents() == [10.0, 10.0]
    assert r.fields["a.u64"].contents() == 2**40
    for t in r.tensors:
        ours = f.ref(t.name)
        assert ours.offset == t.data_offset and ours.nbytes == t.n_bytes and ours.qtype == t.tensor_type
    assert f.ref("t.q8").shape == (4, 64)


def _bytes(tmp_path) -> tuple[Path, bytes]:
    p = tmp_path / "a.gguf"
    _sample(p)
    return p, p.read_bytes()


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda b: b"GGUX" + b[4:], "not a GGUF"),
        (lambda b: b[:4] + struct.pack("<I", 1) + b[8:], "version 1"),
        (lambda b: b[:200], "truncated"),
        (lambda b: b[:-100], "past the end"),
    ],
)
def test_malformed_files_rejected(tmp_path, damage, match):
    p, b = _bytes(tmp_path)
    p.write_bytes(damage(b))
    with pytest.raises(GGUFError, match=match):
        GGUFFile(p)


def test_offsets_must_follow_ggml_layout(tmp_path):
    p, b = _bytes(tmp_path)
    i = b.index(b"t.i32") + len(b"t.i32") + 4 + 16 + 4  # name, n_dims, ne[2], type -> offset
    (off,) = struct.unpack_from("<Q", b, i)
    p.write_bytes(b[:i] + struct.pack("<Q", off + 32) + b[i + 8 :])
    with pytest.raises(GGUFError, match="expected"):
        GGUFFile(p)


def test_unknown_type_and_duplicates(tmp_path):
    p, b = _bytes(tmp_path)
    i = b.index(b"t.q8") + len(b"t.q8") + 4 + 16
    p.write_bytes(b[:i] + struct.pack("<i", 250) + b[i + 4 :])
    with pytest.raises(GGUFError, match="unknown ggml type"):
        GGUFFile(p)
    with pytest.raises(GGUFError, match="duplicate"):
        encode_header([KV("k", "u32", 1), KV("k", "u32", 2)], [])
    with pytest.raises(GGUFError, match="block"):
        TensorEntry("x", (2, 33), Q.Q8_0).nbytes  # noqa: B018


def test_split_paths():
    assert split_paths("/a/m.gguf", 1) == [Path("/a/m.gguf")]
    assert [p.name for p in split_paths("/a/m.gguf", 3)] == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


def test_import_stays_light():
    code = "import sys, dsv4_gguf; assert 'numpy' not in sys.modules; assert callable(dsv4_gguf.open_gguf)"
    subprocess.run([sys.executable, "-c", code], check=True)
