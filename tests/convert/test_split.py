"""gguf-split compatible output: shard names, split.* keys, loads in llama.cpp, reads as one model."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def split_out(tiny_ckpt, tmp_path_factory):
    from dsv4_gguf.cli import main

    out = tmp_path_factory.mktemp("split") / "tiny.gguf"
    assert (
        main(
            [
                "convert",
                str(tiny_ckpt),
                "-o",
                str(out),
                "--type",
                "MXFP4_MOE",
                "--split-max-size",
                "40M",
                "--name",
                "tiny",
            ]
        )
        == 0
    )
    return out


def test_split_files_and_keys(split_out):
    from dsv4_gguf.gguf_io import GGUFFile

    shards = sorted(split_out.parent.glob("tiny-*-of-*.gguf"))
    n = len(shards)
    assert n >= 3 and not split_out.exists()
    assert [p.name for p in shards] == [f"tiny-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]
    total = 0
    for i, p in enumerate(shards):
        f = GGUFFile(p)
        assert f.metadata["split.no"] == i and f.metadata["split.count"] == n
        assert f.kv_types["split.no"] == 2 and f.kv_types["split.count"] == 2  # UINT16
        assert f.kv_types["split.tensors.count"] == 5  # INT32
        assert ("general.architecture" in f.metadata) == (i == 0)  # metadata in the first shard only
        total += len(f.tensors)
        assert p.stat().st_size <= 40e6 or len(f.tensors) == 1
    assert total == GGUFFile(shards[0]).metadata["split.tensors.count"]
    assert (split_out.parent / "mtp-tiny.gguf").exists()


def test_split_loads_in_llama_cpp_like_single_file(split_out, convert_tiny, llama_logits):
    first = next(split_out.parent.glob("tiny-00001-of-*.gguf"))
    a = llama_logits(first)
    b = llama_logits(convert_tiny("MXFP4_MOE"))
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


def test_split_reads_as_one_model(split_out, convert_tiny):
    from dsv4_gguf import open_gguf

    first = next(split_out.parent.glob("tiny-00001-of-*.gguf"))
    s, one = open_gguf(first), open_gguf(convert_tiny("MXFP4_MOE"))
    assert s.mtp is not None and s.args == one.args
    assert s.names() == one.names()
    for n in s.names():
        assert np.array_equal(np.asarray(s.raw(n)), np.asarray(one.raw(n))), n


def test_split_missing_shard_is_an_error(split_out, tmp_path):
    import shutil

    from dsv4_gguf.gguf_io import GGUFError, GGUFShards

    shards = sorted(split_out.parent.glob("tiny-*-of-*.gguf"))
    for p in shards[:-1]:
        shutil.copy(p, tmp_path / p.name)
    with pytest.raises(GGUFError, match="missing"):
        GGUFShards(tmp_path / shards[0].name)
    with pytest.raises(GGUFError, match="first shard"):
        GGUFShards(tmp_path / shards[1].name)
