"""Hostile GGUF headers against both readers: the Python one (gguf_io.GGUFShards, used by open_gguf and
the imatrix loader) and the runtime's C++ loader (csrc/runtime/gguf_file.cpp, through _C.Runtime).

Every case is a hand-built header that breaks one rule (limits, overflow, offsets, alignment, duplicates,
unknown types, split sets); each reader must raise its own error naming the file and the problem.  Cases
marked "fuzz" reproduce crashes the fuzzers found before these checks existed (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import pytest

from dsv4_gguf import gguf_io
from dsv4_gguf.gguf_io import GGUFError, GGUFShards

ROOT = Path(__file__).resolve().parents[2]
U8, U16, U32, I32, F32, STR, ARR, U64 = 0, 2, 4, 5, 6, 8, 9, 10
G_F32, G_Q8_0, G_I64 = 0, 8, 27


def s(t: str | bytes) -> bytes:
    b = t.encode() if isinstance(t, str) else t
    return struct.pack("<Q", len(b)) + b


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<i", vtype) + payload


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def tinfo(name: str | bytes, ne: list[int], gtype: int = G_F32, off: int = 0) -> bytes:
    return s(name) + u32(len(ne)) + struct.pack(f"<{len(ne)}q", *ne) + struct.pack("<iQ", gtype, off)


def gguf(
    kvs: list[bytes],
    tensors: list[bytes],
    data: bytes = b"",
    n_kv: int | None = None,
    n_tensors: int | None = None,
    align: int = 32,
) -> bytes:
    head = (
        b"GGUF"
        + struct.pack("<IQQ", 3, len(tensors) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv)
        + b"".join(kvs)
        + b"".join(tensors)
    )
    return head + b"\0" * (-len(head) % align) + data


def python_reader(path: Path) -> None:
    GGUFShards(path)


def cpp_reader(path: Path) -> None:
    from dsv4_gguf import _C

    _C.Runtime(str(path), threads=1)


READERS = {"python": (python_reader, GGUFError), "cpp": (cpp_reader, None)}


@pytest.fixture(params=sorted(READERS))
def reader(request):
    fn, err = READERS[request.param]
    if err is None:
        from dsv4_gguf import _C

        err = _C.GgufError
    return request.param, fn, err


F32_8 = tinfo("t", [8]), b"\0" * 32
# name -> (file bytes, {reader: message regex}); "*" applies to both readers
CASES: dict[str, tuple[bytes, dict[str, str]]] = {
    "tensor count": (gguf([], [], n_tensors=(1 << 20) + 1), {"*": r"claims 1048577 tensors \(limit 1048576\)"}),
    "key count": (gguf([], [], n_kv=(1 << 16) + 1), {"*": r"claims 65537 metadata keys \(limit 65536\)"}),
    "string length": (
        gguf([struct.pack("<Q", (1 << 26) + 1) + b"k"], []),
        {"*": r"metadata key at byte 24 claims 67108865 bytes \(limit 67108864\)"},
    ),
    "value string length": (
        gguf([kv("a.s", STR, struct.pack("<Q", 1 << 40))], []),
        {
            "python": r"value of 'a.s' at byte \d+ claims 1099511627776 bytes \(limit",
            "cpp": r"a.s at byte \d+ claims 1099511627776 bytes \(limit",
        },
    ),
    "array length": (
        gguf([kv("a.arr", ARR, struct.pack("<iQ", U32, (1 << 22) + 1))], []),
        {"*": r"key 'a.arr' is an array of 4194305 entries \(limit 4194304\)"},
    ),
    # fuzz: the C++ loader reserve()d a claimed string-array length (std::length_error, allocation-size-too-big);
    # its numeric twin (review): 8 * 2^61 wrapped to 0 in the bounds check, then the same reserve()
    "string array 2^62 (fuzz)": (
        gguf([kv("a.strs", ARR, struct.pack("<iQ", STR, 1 << 62))], []),
        {"*": r"key 'a.strs' is an array of 4611686018427387904 entries \(limit"},
    ),
    "number array 2^61 (fuzz)": (
        gguf([kv("a.nums", ARR, struct.pack("<iQ", U64, 1 << 61))], []),
        {"*": r"key 'a.nums' is an array of 2305843009213693952 entries \(limit"},
    ),
    "string array past end": (
        gguf([kv("a.strs", ARR, struct.pack("<iQ", STR, 1 << 22))], []),
        {"*": r"truncated .*a\.strs"},
    ),
    "number array past end": (
        gguf([kv("a.nums", ARR, struct.pack("<iQ", U64, 1 << 22))], []),
        {"*": r"truncated .*a\.nums"},
    ),
    "nested array": (
        gguf([kv("a.n", ARR, struct.pack("<iQ", ARR, 1))], []),
        {"*": r"key 'a.n' is an array of unknown or nested type 9"},
    ),
    "unknown value type": (gguf([kv("a.x", 13, b"\0" * 8)], []), {"*": r"key 'a.x' has unknown value type 13"}),
    "duplicate key": (
        gguf([kv("a.k", U32, u32(1)), kv("a.k", U32, u32(2))], []),
        {"*": r"duplicate metadata key 'a.k'"},
    ),
    # fuzz: ZeroDivisionError in the Python reader (atheris, 4k inputs); a string alignment was a raw ValueError
    "alignment zero": (
        gguf([kv("general.alignment", U32, u32(0))], []),
        {"*": r"general.alignment = 0 is not a power of two"},
    ),
    "alignment not power of two": (
        gguf([kv("general.alignment", U32, u32(48))], [], align=48),
        {"*": r"general.alignment = 48 is not a power of two"},
    ),
    "alignment string": (
        gguf([kv("general.alignment", STR, s("32"))], []),
        {"*": r"general.alignment = .* is not a power of two"},
    ),
    "tensor name length": (
        gguf([], [tinfo("n" * 64, [8])], b"\0" * 32),
        {"*": r"tensor name 'n{64}' .*(longer than ggml's 63-byte limit|limit is 63)"},
    ),
    "too many dims": (gguf([], [tinfo("t", [1, 1, 1, 1, 8])], b"\0" * 32), {"*": r"tensor 't' has 5 dim"}),
    "zero dims": (gguf([], [tinfo("t", [])], b"\0" * 32), {"*": r"tensor 't' has 0 dim"}),
    "negative dim": (gguf([], [tinfo("t", [8, -2])], b"\0" * 32), {"*": r"tensor 't' has dimension 1 = -2"}),
    "element count overflow": (
        gguf([], [tinfo("t", [1 << 40, 1 << 40])], b"\0" * 32),
        {"*": r"tensor 't'.*element count .*overflows int64"},
    ),
    "byte count overflow": (
        gguf([], [tinfo("t", [1 << 62], G_I64)], b"\0" * 32),
        {"python": r"tensor 't' runs past the end of the file", "cpp": r"tensor 't': size overflows"},
    ),
    "offset past end": (
        gguf([], [tinfo("t", [8], off=1 << 40)], b"\0" * 32),
        {
            "python": r"tensor 't' has offset 1099511627776, expected 0",
            "cpp": r"truncated file: tensor 't' needs bytes \[1099511627\d+",
        },
    ),
    "data past end": (
        gguf([], [tinfo("t", [64])], b"\0" * 32),
        {"python": r"tensor 't' runs past the end of the file", "cpp": r"truncated file: tensor 't'"},
    ),
    "misaligned data": (
        gguf([], [tinfo("a", [1]), tinfo("t", [8], off=4)], b"\0" * 64),
        {"*": r"tensor 't' has data offset 4, not a multiple of the alignment 32 \(misaligned"},
    ),
    "duplicate tensor": (
        gguf([], [tinfo("t", [8]), tinfo("t", [8], off=32)], b"\0" * 64),
        {"*": r"duplicate tensor (name )?'t'"},
    ),
    "unknown tensor type": (
        gguf([], [tinfo("t", [8], 99)], b"\0" * 64),
        {"python": r"tensor 't' has unknown ggml type 99", "cpp": r"tensor 't': ggml type id 99 is not supported"},
    ),
    "row not whole blocks": (
        gguf([], [tinfo("t", [40], G_Q8_0)], b"\0" * 64),
        {"*": r"tensor 't'.*row length 40 is not a multiple of the Q8_0 block size 32"},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_header(tmp_path, reader, case):
    name, fn, err = reader
    data, msgs = CASES[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(err) as e:
        fn(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    assert re.search(msgs.get(name, msgs.get("*", "")), msg), msg


def test_metadata_size_limit(tmp_path, reader):
    """Four strings at the per-string limit carry the metadata past its total limit (a sparse file)."""
    name, fn, err = reader
    path = tmp_path / "big.gguf"
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 5)
    with open(path, "wb") as f:
        f.write(head)
        for i in range(5):
            f.write(s(f"k{i}") + struct.pack("<iQ", STR, 1 << 26))
            f.seek(1 << 26, 1)
        f.truncate()
    with pytest.raises(err, match=rf"{re.escape(str(path))}: metadata runs past 268435456 bytes \(at key 'k3'\)"):
        fn(path)


# ---- split sets ----------------------------------------------------------------------------------


def _split(no: int, count: int, n_tensors: int | None = None) -> list[bytes]:
    kvs = [kv("split.no", U16, struct.pack("<H", no)), kv("split.count", U16, struct.pack("<H", count))]
    if n_tensors is not None:
        kvs.append(kv("split.tensors.count", I32, struct.pack("<i", n_tensors)))
    return kvs


def _write_set(tmp_path: Path, parts: list[bytes], count: int | None = None, stem: str = "m") -> Path:
    n = count or len(parts)
    for i, b in enumerate(parts):
        (tmp_path / f"{stem}-{i + 1:05d}-of-{n:05d}.gguf").write_bytes(b)
    return tmp_path / f"{stem}-00001-of-{n:05d}.gguf"


def test_split_set_missing_part(tmp_path, reader):
    name, fn, err = reader
    first = _write_set(
        tmp_path,
        [gguf(_split(0, 3, 2), [tinfo("a", [8])], b"\0" * 32), gguf(_split(1, 3), [tinfo("b", [8])], b"\0" * 32)],
        count=3,
    )
    with pytest.raises(err, match=rf"{re.escape(str(first))}: split shard .*m-00003-of-00003.gguf.* is missing"):
        fn(first)


@pytest.mark.parametrize("bad", [(0, 2), (1, 3), (2, 2)])
def test_split_set_foreign_part(tmp_path, reader, bad):
    """A second shard whose split.no / split.count do not say "part 2 of this 2-file set"."""
    name, fn, err = reader
    first = _write_set(
        tmp_path,
        [gguf(_split(0, 2, 2), [tinfo("a", [8])], b"\0" * 32), gguf(_split(*bad), [tinfo("b", [8])], b"\0" * 32)],
    )
    second = tmp_path / "m-00002-of-00002.gguf"
    with pytest.raises(err, match=rf"{re.escape(str(second))}: .*belongs to another split set"):
        fn(first)


def test_split_set_tensor_count_and_duplicates(tmp_path, reader):
    name, fn, err = reader
    first = _write_set(
        tmp_path,
        [gguf(_split(0, 2, 5), [tinfo("a", [8])], b"\0" * 32), gguf(_split(1, 2), [tinfo("b", [8])], b"\0" * 32)],
    )
    with pytest.raises(err, match=r"split.tensors.count (says|=) 5 .*(shards hold|hold) 2"):
        fn(first)
    first = _write_set(
        tmp_path,
        [gguf(_split(0, 2, 2), [tinfo("a", [8])], b"\0" * 32), gguf(_split(1, 2), [tinfo("a", [8])], b"\0" * 32)],
    )
    with pytest.raises(err, match=r"tensor (name )?'a'"):
        fn(first)


def test_split_set_names_must_match_count(tmp_path, reader):
    """split.count = 3 in a file named ...-of-00002: not the first shard of the set it claims."""
    name, fn, err = reader
    first = _write_set(
        tmp_path, [gguf(_split(0, 3), [tinfo("a", [8])], b"\0" * 32), gguf(_split(1, 3), [tinfo("b", [8])], b"\0" * 32)]
    )
    with pytest.raises(err, match=rf"{re.escape(str(first))}: .*first shard"):
        fn(first)


def test_failed_opens_close_their_files(tmp_path, reader):
    """Errors before the header is parsed (empty file, a folder) leave no descriptor open: a fuzzer (or a
    server retrying a bad path) would otherwise run out of them."""
    name, fn, err = reader
    (tmp_path / "empty.gguf").write_bytes(b"")
    (tmp_path / "dir.gguf").mkdir()
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        for bad, match in (("empty.gguf", r"empty|too short"), ("dir.gguf", r"not a regular file|not found")):
            with pytest.raises(err, match=match):
                fn(tmp_path / bad)
    assert len(os.listdir("/proc/self/fd")) <= fds + 2


def test_limits_equal_in_python_and_cpp():
    """The two readers enforce the same numbers (declared in gguf_io.py and gguf_file.h)."""
    header = (ROOT / "csrc" / "runtime" / "gguf_file.h").read_text()
    cpp = {m[1]: eval(m[2].replace("ull", "")) for m in re.finditer(r"constexpr \w+ kGguf(\w+) = ([^;]+);", header)}
    py = {
        "MaxTensors": gguf_io.MAX_TENSORS,
        "MaxKeys": gguf_io.MAX_KEYS,
        "MaxString": gguf_io.MAX_STRING,
        "MaxArray": gguf_io.MAX_ARRAY,
        "MaxMetadataBytes": gguf_io.MAX_METADATA_BYTES,
        "MaxTensorName": gguf_io.MAX_TENSOR_NAME,
        "MaxAlignment": gguf_io.MAX_ALIGNMENT,
    }
    assert cpp == py
