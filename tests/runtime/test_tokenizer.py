"""The runtime's tokenizer comes from dsv4_gguf's own GGUF reader (``gguf_io.GGUFFile``), not from the `gguf`
package's ``GGUFReader`` (5-10 s on the 129k-token vocabulary): on a converter-written GGUF (the tiny
synthetic checkpoint, real DSV4 tokenizer) it equals the one built from ``GGUFReader``'s fields in
vocabulary, merges, special tokens, BOS/EOS and the ids of sample texts, chat markers included."""

from __future__ import annotations

import json

import pytest

from dsv4_gguf import runtime

TEXTS = [
    "Hello world!",
    "  leading spaces and trailing  ",
    "Numbers 1234567 and 3.14159, dates 2026-11-29.",
    "中文测试：深度求索。日本語のテキスト、カタカナ。",
    "def f(x):\n    return x**2  # code\n\n\ttab",
    "emoji 🤖🚀 and accents: café naïve façade",
    "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜><think>hmm</think>OK<｜end▁of▁sentence｜>",
    "<｜User｜>Hi<｜Assistant｜></think>Sure.<｜end▁of▁sentence｜><｜User｜>again",
    "mixed\r\nline endings\rand   runs   of    spaces",
]
TOKENIZER_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
)


@pytest.fixture(scope="module")
def gguf(tiny_ckpt, tmp_path_factory):
    from dsv4_gguf.cli import main

    out = tmp_path_factory.mktemp("tok") / "tiny.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", "MXFP4_MOE", "--no-mtp"]) == 0
    return out


@pytest.fixture(scope="module")
def package_fields(gguf):
    """The tokenizer keys as the `gguf` package reads them."""
    from gguf import GGUFReader

    r = GGUFReader(str(gguf))
    return {k: r.fields[k].contents() for k in TOKENIZER_KEYS if k in r.fields}


def _merges(tok) -> list:
    return json.loads(tok.to_str())["model"]["merges"]


def test_our_reader_returns_the_tokenizer_keys_of_the_gguf_package(gguf, package_fields):
    from dsv4_gguf.gguf_io import GGUFFile

    md = GGUFFile(gguf).metadata
    assert set(package_fields) == set(TOKENIZER_KEYS)
    assert len(package_fields["tokenizer.ggml.tokens"]) == 129280
    for key, value in package_fields.items():
        assert md[key] == value, key


def test_tokenizer_from_our_reader_equals_the_one_from_gguf_package(gguf, package_fields, monkeypatch):
    import gguf as gguf_package

    peer = runtime.build_tokenizer(gguf, metadata=package_fields)

    def no_reader(*args, **kwargs):
        raise AssertionError("build_tokenizer parsed the GGUF with gguf.GGUFReader")

    monkeypatch.setattr(gguf_package, "GGUFReader", no_reader)
    monkeypatch.setattr(gguf_package.gguf_reader, "GGUFReader", no_reader)
    ours = runtime.build_tokenizer(gguf)
    assert ours.get_vocab(with_added_tokens=True) == peer.get_vocab(with_added_tokens=True)
    assert _merges(ours) == _merges(peer) and len(_merges(ours)) == len(package_fields["tokenizer.ggml.merges"])
    specials = {t.content for t in ours.get_added_tokens_decoder().values() if t.special}
    assert specials == {t.content for t in peer.get_added_tokens_decoder().values() if t.special}
    assert {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"} <= specials
    assert (ours.bos_id, ours.eos_id) == (peer.bos_id, peer.eos_id) == (0, 1)
    for text in TEXTS:
        ids = ours.encode(text, add_special_tokens=False).ids
        assert ids == peer.encode(text, add_special_tokens=False).ids, text
        assert ours.decode(ids, skip_special_tokens=False) == text
    marker = ours.encode("<｜User｜>", add_special_tokens=False).ids
    assert len(marker) == 1 and ours.id_to_token(marker[0]) == "<｜User｜>"


def test_model_tokenizer_reads_the_header_once_with_our_reader(gguf, monkeypatch):
    import gguf as gguf_package

    from dsv4_gguf import gguf_io

    opened = []
    real_init = gguf_io.GGUFFile.__init__

    def counting_init(self, path):
        opened.append(str(path))
        real_init(self, path)

    def no_reader(*args, **kwargs):
        raise AssertionError("the runtime parsed the GGUF with gguf.GGUFReader")

    monkeypatch.setattr(gguf_io.GGUFFile, "__init__", counting_init)
    monkeypatch.setattr(gguf_package, "GGUFReader", no_reader)
    monkeypatch.setattr(gguf_package.gguf_reader, "GGUFReader", no_reader)
    model = runtime.load(gguf, threads=2)
    assert model.encode("Hello world!") == model.encode("Hello world!")
    assert opened == [str(gguf)]
