"""Run folders: manifest, torn-line repair after a kill, refusal to resume with other settings, file
fingerprints, bits per weight of a GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dsv4_gguf.eval import run as runmod
from dsv4_gguf.eval.run import RunDir, RunError, file_digest, gguf_info


def test_rundir_resume_and_torn_line(tmp_path: Path) -> None:
    r = RunDir(tmp_path, "kld", {"ctx": 128, "model": {"file": {"sha256": "ab"}}}, info={"variant": "x"})
    assert not r.resumed
    r.append({"uid": "chunk:0", "v": 1.5})
    r.append({"uid": "chunk:1", "v": 2.5})
    with open(r.items_path, "a") as f:  # a kill in the middle of a write
        f.write('{"uid": "chunk:2", "v"')
    r2 = RunDir(tmp_path, "kld", {"ctx": 128, "model": {"file": {"sha256": "ab"}}})
    assert r2.resumed and list(r2.done()) == ["chunk:0", "chunk:1"]
    r2.append({"uid": "chunk:2", "v": 3.5})
    assert [x["v"] for x in r2.records()] == [1.5, 2.5, 3.5]
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["task"] == "kld" and man["info"] == {"variant": "x"} and "python" in man["versions"]
    with pytest.raises(RunError, match="'ctx' was 128 and is now 256"):
        RunDir(tmp_path, "kld", {"ctx": 256, "model": {"file": {"sha256": "ab"}}})
    with pytest.raises(RunError, match="holds a 'kld' run"):
        RunDir(tmp_path, "mrcr", {})
    r3 = RunDir(tmp_path, "kld", {"ctx": 256}, overwrite=True)
    assert not r3.resumed and r3.records() == []


def test_file_digest_full_and_quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    p = tmp_path / "m.gguf"
    data = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    p.write_bytes(data)
    assert file_digest(p) == {"name": "m.gguf", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    monkeypatch.setattr(runmod, "QUICK_HASH_ABOVE", 1 << 20)
    monkeypatch.setattr(runmod, "_QUICK_SPAN", 1 << 20)
    quick = file_digest(p)
    want = hashlib.sha256(str(len(data)).encode() + data[: 1 << 20] + data[-(1 << 20) :]).hexdigest()
    assert quick == {"name": "m.gguf", "size": len(data), "quick_sha256": want}
    assert "sha256" in file_digest(p, full=True)


def test_gguf_bits_per_weight(tmp_path: Path) -> None:
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    w = GGUFWriter(str(tmp_path / "t.gguf"), arch="deepseek4")
    w.add_uint32("general.file_type", 7)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((4, 64)).astype(np.float32))  # 32 bits
    q = quantize(rng.standard_normal((8, 64)).astype(np.float32), GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.attn_q.weight", q, raw_dtype=GGMLQuantizationType.Q8_0)  # 8.5 bits
    w.add_tensor("blk.0.ffn_gate_tid2eid.weight", np.zeros((2, 8), np.int32))  # not a weight
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    info = gguf_info(tmp_path / "t.gguf")
    assert info["bpw_blocks"] == 8.5 and info["file_type"] == 7 and info["n_params"] == 256 + 512 + 16
    assert info["bpw"] == pytest.approx((256 * 32 + 512 * 8.5 + 16 * 32) / (256 + 512 + 16))
