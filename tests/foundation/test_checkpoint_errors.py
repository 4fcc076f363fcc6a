"""Hostile or broken checkpoints: every case is a CheckpointError that names the problem, never a crash."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from dsv4_gguf.checkpoint import Checkpoint, CheckpointError, SafetensorsFile
from dsv4_gguf.cli import main

INDEX = "model.safetensors.index.json"


# ---- single-file header attacks -------------------------------------------------------------


def _raw(tmp_path: Path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> Path:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)
    return p


def _short(tmp_path: Path) -> Path:
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\x01\x02")
    return p


def _ent(dtype="F32", shape=(2,), offs=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offs)}


@pytest.mark.parametrize(
    "make,match",
    [
        (_short, "truncated"),
        (lambda t: _raw(t, {"a": _ent()}, b"\0" * 8, length=1 << 20), "larger than the file"),
        (lambda t: _raw(t, {"a": _ent()}, b"\0" * 8, length=1 << 40), "exceeds"),
        (lambda t: _raw(t, b"{not json", b""), "not valid JSON"),
        (lambda t: _raw(t, b"[1, 2]", b""), "JSON object"),
        (lambda t: _raw(t, {"a": _ent(dtype="F4_WEIRD")}, b"\0" * 8), "unknown dtype 'F4_WEIRD'"),
        (lambda t: _raw(t, {"a": _ent(offs=(0, 16))}, b"\0" * 16), "needs 8"),
        (lambda t: _raw(t, {"a": _ent(offs=(8, 16))}, b"\0" * 12), "run past the end"),
        (lambda t: _raw(t, {"a": _ent(offs=(0, 8)), "b": _ent(offs=(4, 12))}, b"\0" * 12), "overlap"),
        (lambda t: _raw(t, {"a": _ent(offs=(-8, 0))}, b"\0" * 8), "invalid data_offsets"),
        (lambda t: _raw(t, {"a": _ent(shape=(2, -1))}, b"\0" * 8), "invalid shape"),
        (lambda t: _raw(t, {"a": {"dtype": "F32"}}, b""), "needs dtype, shape and data_offsets"),
    ],
    ids=[
        "truncated",
        "header-too-long",
        "header-huge",
        "bad-json",
        "not-object",
        "unknown-dtype",
        "size-mismatch",
        "out-of-range",
        "overlap",
        "negative-offset",
        "bad-shape",
        "missing-fields",
    ],
)
def test_hostile_shard_headers(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(CheckpointError, match=match) as e:
        SafetensorsFile(path)
    assert "x.safetensors" in str(e.value)


def test_truncated_data_in_a_real_shard(tmp_path, micro_ckpt):
    ck = _copy(micro_ckpt, tmp_path)
    shard = sorted(ck.glob("model-*.safetensors"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated") as e:
        Checkpoint(ck)
    assert shard.name in str(e.value)


# ---- directory-level problems ---------------------------------------------------------------


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def _index(ck: Path) -> dict:
    return json.loads((ck / INDEX).read_text())


def _write_index(ck: Path, idx: dict) -> None:
    (ck / INDEX).write_text(json.dumps(idx))


def _rewrite_shard_of(ck: Path, name: str, change) -> None:
    """Rewrite the shard holding ``name`` with ``change(tensors)`` applied, and fix the index."""
    idx = _index(ck)
    shard = idx["weight_map"][name]
    with SafetensorsFile(ck / shard) as f:
        tensors = {k: np.array(f.view(k)) for k in f.keys()}
    change(tensors)
    save_file(tensors, str(ck / shard), metadata={"format": "pt"})
    idx["weight_map"] = {k: v for k, v in idx["weight_map"].items() if v != shard}
    idx["weight_map"].update({k: shard for k in tensors})
    idx["metadata"].pop("total_size", None)
    _write_index(ck, idx)


def _add_tensor(ck: Path, name: str, arr: np.ndarray) -> None:
    save_file({name: arr}, str(ck / "extra.safetensors"))
    idx = _index(ck)
    idx["weight_map"][name] = "extra.safetensors"
    idx["metadata"].pop("total_size", None)
    _write_index(ck, idx)


def test_missing_shard_named_in_index(tmp_path, micro_ckpt):
    ck = _copy(micro_ckpt, tmp_path)
    victim = sorted(ck.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"shard '{victim.name}' named in {INDEX} is missing"):
        Checkpoint(ck)


def test_missing_scale_tensor(tmp_path, micro_ckpt):
    ck = _copy(micro_ckpt, tmp_path)
    _rewrite_shard_of(ck, "layers.2.attn.wq_b.scale", lambda t: t.pop("layers.2.attn.wq_b.scale"))
    with pytest.raises(CheckpointError, match=r"scale tensor 'layers\.2\.attn\.wq_b\.scale' .* is missing"):
        Checkpoint(ck)


def test_missing_expert_weight(tmp_path, micro_ckpt):
    ck = _copy(micro_ckpt, tmp_path)
    name = "layers.1.ffn.experts.3.w2.weight"
    _rewrite_shard_of(ck, name, lambda t: t.pop(name))
    with pytest.raises(CheckpointError, match=rf"tensor '{name}' .* is missing"):
        Checkpoint(ck)


def test_wrong_shape(tmp_path, micro_ckpt):
    ck = _copy(micro_ckpt, tmp_path)
    name = "layers.0.attn.kv_norm.weight"

    def shrink(t):
        t[name] = t[name][:64].copy()

    _rewrite_shard_of(ck, name, shrink)
    with pytest.raises(CheckpointError, match=rf"'{name}' is BF16\[64\], expected BF16\[128\]"):
        Checkpoint(ck)


def test_wrong_dtype(tmp_path, micro_ckpt):
    ck = _copy(micro_ckpt, tmp_path)
    name = "layers.1.attn.attn_sink"

    def widen(t):
        t[name] = t[name].astype(np.float64)

    _rewrite_shard_of(ck, name, widen)
    with pytest.raises(CheckpointError, match=rf"'{name}' is F64\[4\], expected F32\[4\]"):
        Checkpoint(ck)


@pytest.mark.parametrize(
    "name,arr,match",
    [
        (
            "layers.0.attn.compressor.norm.weight",
            np.ones(128, np.float32),
            "block 0 has compress ratio 0; a compressor exists only for ratio > 0",
        ),
        (
            "layers.1.attn.indexer.weights_proj.weight",
            np.ones((4, 256), np.float32),
            "block 1 has compress ratio 128; an indexer exists only for ratio 4",
        ),
        ("layers.0.ffn.gate.bias", np.zeros(8, np.float32), r"tid2eid xor gate\.bias"),
        ("layers.3.ffn.gate.tid2eid", np.zeros((1024, 2), np.int64), "not hash-routed"),
        ("layers.9.attn_norm.weight", np.ones(256, np.float32), "config.json has 6 blocks"),
        ("mystery.weight", np.ones(3, np.float32), "not part of the DeepSeek-V4 layout"),
    ],
)
def test_presence_rules(tmp_path, micro_ckpt, name, arr, match):
    ck = _copy(micro_ckpt, tmp_path)
    _add_tensor(ck, name, arr)
    with pytest.raises(CheckpointError, match=match):
        Checkpoint(ck)


def test_hash_layer_without_tid2eid(tmp_path, micro_ckpt):
    ck = _copy(micro_ckpt, tmp_path)
    name = "layers.1.ffn.gate.tid2eid"
    _rewrite_shard_of(ck, name, lambda t: t.pop(name))
    with pytest.raises(CheckpointError, match=r"hash-routed block 1 .* needs 'layers\.1\.ffn\.gate\.tid2eid'"):
        Checkpoint(ck)


def test_index_problems(tmp_path, micro_ckpt):
    ck = _copy(micro_ckpt, tmp_path)
    idx = _index(ck)
    good = json.dumps(idx)
    idx["weight_map"]["embed.weight"] = "../../etc/passwd.safetensors"
    _write_index(ck, idx)
    with pytest.raises(CheckpointError, match="not a plain"):
        Checkpoint(ck)
    idx = json.loads(good)
    idx["metadata"]["total_size"] += 1
    _write_index(ck, idx)
    with pytest.raises(CheckpointError, match="total_size"):
        Checkpoint(ck)
    (ck / INDEX).write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Checkpoint(ck)
    (ck / INDEX).write_text("{}")
    with pytest.raises(CheckpointError, match="weight_map"):
        Checkpoint(ck)
    idx = json.loads(good)
    moved = idx["weight_map"]["norm.weight"]
    idx["weight_map"]["norm.weight"] = [s for s in set(idx["weight_map"].values()) if s != moved][0]
    _write_index(ck, idx)
    with pytest.raises(CheckpointError, match="norm.weight"):
        Checkpoint(ck)


def test_not_a_checkpoint_dir(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        Checkpoint(tmp_path / "nope")


def test_cli_check_reports_errors_with_exit_1(tmp_path, micro_ckpt, capsys):
    assert main(["check", str(micro_ckpt)]) == 0
    ck = _copy(micro_ckpt, tmp_path)
    sorted(ck.glob("model-*.safetensors"))[0].unlink()
    assert main(["check", str(ck)]) == 1
    assert "is missing" in capsys.readouterr().err


def test_dequantize_without_validation_still_checks_scale(tmp_path, micro_ckpt):
    ck = _copy(micro_ckpt, tmp_path)
    name = "layers.2.attn.wkv.scale"
    _rewrite_shard_of(ck, name, lambda t: t.pop(name))
    with Checkpoint(ck, validate=False) as c:
        with pytest.raises(CheckpointError, match=r"has no scale tensor 'layers\.2\.attn\.wkv\.scale'"):
            c.dequantize("layers.2.attn.wkv.weight")
