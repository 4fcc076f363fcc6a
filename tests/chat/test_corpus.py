"""Must-show 1: chat.py, the Jinja template (jinja2 sandbox + llama-cpp-python) and the Ollama Go template
all render exactly the official encoder's string, for every corpus conversation in every think mode."""

from __future__ import annotations

import jinja2
import jinja2.sandbox
import pytest

from dsv4_gguf import chat
from dsv4_gguf.templates import jinja_template


@pytest.fixture(scope="module")
def jinja_sandboxed():
    # transformers' settings: sandboxed, trim_blocks + lstrip_blocks.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(jinja_template())


@pytest.fixture(scope="module")
def jinja_plain():
    return jinja2.Environment().from_string(jinja_template())


@pytest.fixture(scope="module")
def llama_cpp_formatter():
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(template=jinja_template(), eos_token=chat.EOS, bos_token=chat.BOS)


def _expected(oracle, corpus, conv, mode):
    thinking_mode, effort = corpus.MODES[mode]
    return oracle.encode_messages(corpus.oracle_messages(conv), thinking_mode, reasoning_effort=effort)


def _kwargs(corpus, conv, mode):
    thinking_mode, effort = corpus.MODES[mode]
    return dict(
        messages=corpus.hf_messages(conv),
        tools=conv["tools"],
        add_generation_prompt=True,
        thinking=thinking_mode == "thinking",
        reasoning_effort=effort,
    )


def test_corpus_size(corpus):
    convs = corpus.CONVERSATIONS
    assert len(convs) >= 40
    assert sum(1 for c in convs if c["ollama"] is True) >= 40
    roles = {m["role"] for c in convs for m in c["messages"]}
    assert roles >= {"system", "user", "assistant", "tool", "developer", "latest_reminder"}


def test_chat_py(oracle, corpus, conv, mode):
    thinking_mode, effort = corpus.MODES[mode]
    want = _expected(oracle, corpus, conv, mode)
    # OpenAI convention (JSON-string arguments, tools on the system message) ...
    assert chat.encode_messages(corpus.oracle_messages(conv), thinking_mode, reasoning_effort=effort) == want
    # ... and HF convention (mapping arguments, tools passed separately).
    got = chat.encode_messages(corpus.hf_messages(conv), thinking_mode, reasoning_effort=effort, tools=conv["tools"])
    assert got == want


def test_jinja2(oracle, corpus, conv, mode, jinja_sandboxed, jinja_plain):
    want = _expected(oracle, corpus, conv, mode)
    assert jinja_sandboxed.render(**_kwargs(corpus, conv, mode)) == want
    assert jinja_plain.render(**_kwargs(corpus, conv, mode)) == want


def test_llama_cpp_python(oracle, corpus, conv, mode, llama_cpp_formatter):
    want = _expected(oracle, corpus, conv, mode)
    kwargs = _kwargs(corpus, conv, mode)
    del kwargs["add_generation_prompt"]  # the formatter passes its own (True by default)
    result = llama_cpp_formatter(**kwargs)
    assert result.prompt == want
    assert result.stop == [chat.EOS]


def test_go_template(oracle, corpus, go_render, go_template):
    """All conversations x modes in one Go run; every Ollama-representable one must match."""
    cases, wants, names = [], [], []
    for conv in corpus.CONVERSATIONS:
        if conv["ollama"] is not True:
            continue
        for mode, (thinking_mode, effort) in corpus.MODES.items():
            cases.append(corpus.ollama_case(conv, thinking_mode, effort))
            wants.append(
                oracle.encode_messages(corpus.ollama_oracle_messages(conv), thinking_mode, reasoning_effort=effort)
            )
            names.append(f"{conv['id']}[{mode}]")
    results = go_render(go_template, cases)
    errors = [f"{n}: {r['error']}" for n, r in zip(names, results, strict=True) if r.get("error")]
    assert not errors, errors
    mismatched = [n for n, r, w in zip(names, results, wants, strict=True) if r["out"] != w]
    assert not mismatched, mismatched
    assert len(cases) >= 40 * len(corpus.MODES)


def test_go_template_sees_what_ollama_cannot_carry(oracle, corpus, go_render, go_template):
    """The cases marked ollama=False really differ under Ollama's data (the marks are not hiding bugs)."""
    # (response_format and content parts cannot even be expressed in Ollama's request.)
    flagged = [c for c in corpus.CONVERSATIONS if c["id"] in ("unsorted-arguments", "two-system-messages")]
    cases = [corpus.ollama_case(c, "chat", None) for c in flagged]
    results = go_render(go_template, cases)
    for conv, result in zip(flagged, results, strict=True):
        want = oracle.encode_messages(corpus.ollama_oracle_messages(conv), "chat")
        assert result["out"] != want, conv["id"]
