"""The embedded Jinja template in llama.cpp's own C++ Jinja engine (common/jinja: llama-server --jinja, llama-cli,
every llama.cpp app), compiled from llama.cpp's source tree by tests/chat/llama_jinja.py: every corpus
conversation in every think mode renders exactly the official encoder's string, with the context built the way
llama.cpp builds it (`enable_thinking` always set, `add_generation_prompt` only when true, tools only when given).

Without the llama.cpp tree or g++ these tests skip (a failure under CI: the policy of tests/conftest.py).
"""

from __future__ import annotations

import pytest
from chat import llama_jinja

from dsv4_gguf import chat
from dsv4_gguf.templates import jinja_template


@pytest.fixture(scope="module")
def llama_render():
    try:
        binary = llama_jinja.build()
    except llama_jinja.Unavailable as e:
        pytest.skip(f"llama.cpp's Jinja engine: {e}")
    return lambda cases: llama_jinja.render(binary, jinja_template(), cases)


def _case(corpus, conv, mode, add_generation_prompt=True):
    """The context common_chat_template_direct_apply passes (chat_template_kwargs carry reasoning_effort)."""
    thinking_mode, effort = corpus.MODES[mode]
    ctx = {
        "messages": corpus.hf_messages(conv),
        "bos_token": chat.BOS,
        "eos_token": chat.EOS,
        "enable_thinking": thinking_mode == "thinking",
        "add_generation_prompt": add_generation_prompt,
    }
    if conv["tools"]:
        ctx["tools"] = conv["tools"]
    if effort is not None:
        ctx["reasoning_effort"] = effort
    return ctx


def _want(oracle, corpus, conv, mode, add_generation_prompt=True):
    thinking_mode, effort = corpus.MODES[mode]
    want = oracle.encode_messages(corpus.oracle_messages(conv), thinking_mode, reasoning_effort=effort)
    if not add_generation_prompt and conv["messages"][-1]["role"] in ("user", "tool", "developer"):
        prompt = chat.ASSISTANT + (chat.THINK_START if thinking_mode == "thinking" else chat.THINK_END)
        assert want.endswith(prompt), conv["id"]
        want = want[: -len(prompt)]
    return want


@pytest.fixture(scope="module")
def rendered(corpus, llama_render):
    """Every conversation x mode x add_generation_prompt in one driver run, by (id, mode, flag)."""
    keys = [(c["id"], m, g) for c in corpus.CONVERSATIONS for m in corpus.MODES for g in (True, False)]
    convs = {c["id"]: c for c in corpus.CONVERSATIONS}
    results = llama_render([_case(corpus, convs[i], m, g) for i, m, g in keys])["results"]
    return dict(zip(keys, results, strict=True))


def _check(result: dict, want: str) -> None:
    assert "error" not in result, f"llama.cpp's engine failed: {result['error'].strip()}"
    got = result["out"]
    i = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
    assert got == want, (
        f"differs at char {i}: got {got[max(0, i - 40) : i + 40]!r}, want {want[max(0, i - 40) : i + 40]!r}"
    )


def test_corpus(oracle, corpus, conv, mode, rendered):
    _check(rendered[conv["id"], mode, True], _want(oracle, corpus, conv, mode))


def test_no_generation_prompt(oracle, corpus, conv, mode, rendered):
    """llama.cpp leaves add_generation_prompt undefined when false (chat history, its generation-prompt diff)."""
    _check(rendered[conv["id"], mode, False], _want(oracle, corpus, conv, mode, add_generation_prompt=False))


def test_capabilities(llama_render):
    """What llama.cpp's capability probe (caps_get) concludes decides how llama-server prepares messages:
    object arguments mean it parses OpenAI's JSON-string arguments itself (the engine has no `from_json`)."""
    caps = llama_render([])["caps"]
    want = (
        "supports_tools",
        "supports_tool_calls",
        "supports_parallel_tool_calls",
        "supports_system_role",
        "supports_object_arguments",
        "supports_string_content",
        "supports_reasoning_effort",
    )
    assert {k: caps[k] for k in want} == dict.fromkeys(want, True), caps
