"""The GGUF's tokenizer metadata makes llama.cpp tokenize exactly like the checkpoint's tokenizer.json."""

from __future__ import annotations

import pytest

TEXTS = [
    "Hello world! DeepSeek-V4 converts to GGUF.",
    "数字 1234567 和 3.14159，还有中文标点。日本語のテキストも。",
    "def f(x):\n    return x**2  # code\n\n\tindent",
    "  leading spaces, trailing   \n\n\n newlines",
    "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜></think>Hello!<｜end▁of▁sentence｜>",
    "emoji 🚀🦙 and accents: naïve café résumé",
    "'''''' ```` \"\"\" ...... !!!!!! ?????? I've been 'told he's there",
]


def test_llama_cpp_tokenizes_like_tokenizer_json(convert_tiny, tiny_ckpt):
    llama_cpp = pytest.importorskip("llama_cpp")
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(tiny_ckpt / "tokenizer.json"))
    llm = llama_cpp.Llama(model_path=str(convert_tiny("SOURCE")), vocab_only=True, verbose=False)
    try:
        for text in TEXTS:
            ours = llm.tokenize(text.encode(), add_bos=False, special=True)
            ref = hf.encode(text, add_special_tokens=False).ids
            assert ours == ref, text
        assert llm.token_bos() == 0 and llm.token_eos() == 1
        md = llm.metadata
        assert md["tokenizer.ggml.pre"] == "joyai-llm" and md["tokenizer.ggml.add_bos_token"] == "false"
        assert "tokenizer.chat_template" in md
    finally:
        llm.close()
