"""Tiny GGUF fixtures (written with the `gguf` package's GGUFWriter) for the Ollama export tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_gguf(path: Path, arch: str = "deepseek4", split_max_tensors: int = 0) -> list[Path]:
    """A small model-shaped GGUF: a few metadata keys, F32 / F16 / Q8_0 / I32 tensors. Returns its files."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    rng = np.random.default_rng(5)
    writer = GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    writer.add_uint32(f"{arch}.context_length", 1048576)
    writer.add_uint32(f"{arch}.block_count", 2)
    writer.add_uint32("general.file_type", 7)
    writer.add_string("general.name", "tiny DSV4 export fixture")
    writer.add_array(f"{arch}.compress_ratios", [0, 4])
    writer.add_tensor("token_embd.weight", rng.standard_normal((16, 64), dtype=np.float32).astype(np.float16))
    q = quantize(rng.standard_normal((8, 64), dtype=np.float32), GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.attn_q_a.weight", q, raw_dtype=GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.attn_norm.weight", rng.standard_normal(64, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_gate_tid2eid", np.arange(12, dtype=np.int32).reshape(3, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if split_max_tensors:
        return sorted(path.parent.glob(f"{path.stem}-*-of-*.gguf"))
    return [path]


@pytest.fixture
def tiny_gguf(tmp_path) -> Path:
    (tmp_path / "src").mkdir()
    return write_gguf(tmp_path / "src" / "tiny.gguf")[0]


@pytest.fixture
def split_gguf(tmp_path) -> list[Path]:
    (tmp_path / "split").mkdir()
    return write_gguf(tmp_path / "split" / "tiny.gguf", split_max_tensors=2)


@pytest.fixture
def llama_gguf(tmp_path) -> Path:
    (tmp_path / "other").mkdir()
    return write_gguf(tmp_path / "other" / "llama.gguf", arch="llama")[0]
