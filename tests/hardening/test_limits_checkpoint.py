"""Limits of the safetensors shard reader and the checkpoint index (dsv4_gguf/checkpoint.py) that
tests/foundation/test_checkpoint_errors.py does not cover: each a CheckpointError naming the file, the
tensor or key, and the problem.  Cases marked "bug" failed with a raw exception before these checks.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from safetensors.numpy import save_file

from dsv4_gguf.checkpoint import INDEX_NAME, MAX_INDEX_BYTES, Checkpoint, CheckpointError, SafetensorsFile
from dsv4_gguf.config import PRESETS


def _shard(tmp_path: Path, header: bytes, data: bytes = b"") -> Path:
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return p


def _ent(shape, offs=(0, 0), dtype="F32") -> str:
    return json.dumps({"dtype": dtype, "shape": list(shape), "data_offsets": list(offs)})


@pytest.mark.parametrize(
    "header, data, match",
    [
        # bug: the int64 product of [2^32, 2^32] wrapped to 0, so data_offsets [0, 0] passed and view() asked
        # numpy for a 2^64-element array
        (
            f'{{"t": {_ent([1 << 32, 1 << 32])}}}',
            b"",
            r"tensor 't' has shape \[4294967296, 4294967296\] whose "
            r"element count overflows",
        ),
        # bug: OverflowError from numpy's int64 product (a dimension beyond int64)
        (
            f'{{"t": {_ent([1 << 70, 0])}}}',
            b"",
            r"tensor 't' has shape \[1180591620717411303424, 0\] whose element "
            r"count overflows",
        ),
        (f'{{"t": {_ent([1] * 9, (0, 4))}}}', b"\0" * 4, r"tensor 't' has 9 dimensions \(limit 8\)"),
        # the last of two equal names silently won before
        (f'{{"t": {_ent([1], (0, 4))}, "t": {_ent([1], (4, 8))}}}', b"\0" * 8, r"duplicate key 't'"),
        # bug: RecursionError from the json module
        ('{"t": ' + "[" * 100000 + "]" * 100000 + "}", b"", r"nested too deeply"),
    ],
)
def test_shard_header_limits(tmp_path, header, data, match):
    p = _shard(tmp_path, header.encode(), data)
    with pytest.raises(CheckpointError, match=match) as e:
        SafetensorsFile(p)
    assert str(p) in str(e.value)


def _ckpt_dir(tmp_path: Path, index: bytes) -> Path:
    import numpy as np

    save_file({"a": np.zeros(2, np.float32)}, tmp_path / "model-00001-of-00001.safetensors")
    (tmp_path / INDEX_NAME).write_bytes(index)
    return tmp_path


@pytest.mark.parametrize(
    "index, match",
    [
        # bug: AttributeError ('list' object has no attribute 'get')
        (b'{"metadata": [1], "weight_map": {"a": "model-00001-of-00001.safetensors"}}', None),
        (
            b'{"weight_map": {"a": "model-00001-of-00001.safetensors", "a": "model-00001-of-00001.safetensors"}}',
            r"duplicate key 'a'",
        ),
        (b'{"weight_map": ' + b"[" * 100000 + b"]" * 100000 + b"}", r"nested too deeply"),
        (b'{"weight_map": {"a": "../x.safetensors"}}', r"tensor 'a' maps to '../x.safetensors'"),
    ],
)
def test_index_limits(tmp_path, index, match):
    d = _ckpt_dir(tmp_path, index)
    if match is None:  # malformed metadata is ignored like a missing one; the index itself is usable
        assert Checkpoint(d, validate=False, args=PRESETS["tiny"]).names() == ["a"]
        return
    with pytest.raises(CheckpointError, match=match) as e:
        Checkpoint(d, validate=False, args=PRESETS["tiny"])
    assert INDEX_NAME in str(e.value)


def test_index_size_limit(tmp_path):
    d = _ckpt_dir(tmp_path, b"{}")
    with open(d / INDEX_NAME, "wb") as f:  # sparse: nothing is written or read
        f.truncate(MAX_INDEX_BYTES + 1)
    with pytest.raises(
        CheckpointError,
        match=rf"{INDEX_NAME}: {MAX_INDEX_BYTES + 1} bytes is over the "
        rf"{MAX_INDEX_BYTES}-byte limit",
    ):
        Checkpoint(d, validate=False, args=PRESETS["tiny"])
