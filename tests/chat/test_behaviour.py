"""Template options beyond the corpus (generation prompt, thinking aliases, JSON-string arguments) and the
chat.py-only encoder options (context continuation, drop_thinking, tasks, wo_eos), against the oracle."""

from __future__ import annotations

import json
import re

import jinja2
import jinja2.sandbox
import pytest

from dsv4_gguf import chat
from dsv4_gguf.templates import jinja_template, ollama_template

# Mapping methods of Python dicts and of llama.cpp's engine objects (common/jinja/value.cpp builtins).
MAPPING_METHODS = frozenset(
    "keys items values get update pop copy setdefault clear tojson string length dictsort join default".split()
)


def _env(**filters):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters.update(filters)
    return env.from_string(jinja_template())


def _raise(message):
    raise ValueError(message)


def _conv(corpus, name):
    return next(c for c in corpus.CONVERSATIONS if c["id"] == name)


def test_no_generation_prompt(oracle, corpus):
    conv = _conv(corpus, "spec-example-2")
    want = oracle.encode_messages(conv["messages"], "thinking")
    got = _env().render(messages=conv["messages"], thinking=True, add_generation_prompt=False)
    assert want == got + chat.ASSISTANT + chat.THINK_START


def test_generation_prompt_defaults_off(oracle, corpus):
    """Undefined means false, as llama.cpp reads it: it passes add_generation_prompt only when true."""
    conv = _conv(corpus, "system-user")
    want = oracle.encode_messages(conv["messages"], "chat")
    assert _env().render(messages=conv["messages"]) + chat.ASSISTANT + chat.THINK_END == want
    assert _env().render(messages=conv["messages"], add_generation_prompt=True) == want


def test_namespace_attributes_are_not_mapping_methods():
    """llama.cpp's engine resolves `ns.keys` to the mapping method `keys`, whatever the namespace holds."""
    template = jinja_template()
    attrs = set(re.findall(r"\bds\.([A-Za-z_]\w*)", template))
    assert attrs and not attrs & MAPPING_METHODS, sorted(attrs)


@pytest.mark.parametrize("flag", [True, False])
def test_enable_thinking_alias(oracle, corpus, flag):
    conv = _conv(corpus, "two-turns-reasoning")
    want = oracle.encode_messages(conv["messages"], "thinking" if flag else "chat")
    template = _env()
    assert template.render(messages=conv["messages"], enable_thinking=flag, add_generation_prompt=True) == want
    # `thinking` wins over the alias when both are given.
    got = template.render(
        messages=conv["messages"], thinking=flag, enable_thinking=not flag, add_generation_prompt=True
    )
    assert got == want


def test_bad_reasoning_effort():
    with pytest.raises(ValueError, match="reasoning_effort must be none"):
        _env().render(messages=[{"role": "user", "content": "x"}], reasoning_effort="low", raise_exception=_raise)
    with pytest.raises(chat.ChatFormatError, match="reasoning_effort"):
        chat.encode_messages([{"role": "user", "content": "x"}], "thinking", reasoning_effort="low")


def test_json_string_arguments_need_from_json(oracle, corpus):
    conv = _conv(corpus, "typed-arguments")
    kwargs = dict(messages=conv["messages"], tools=conv["tools"], thinking=True, add_generation_prompt=True)
    want = oracle.encode_messages(corpus.oracle_messages(conv), "thinking")
    # Plain jinja2 has no JSON parser: a clear error, never a wrong prompt ...
    with pytest.raises(jinja2.TemplateRuntimeError, match="from_json"):
        _env().render(**kwargs)
    # ... while an engine with `from_json` renders the OpenAI convention exactly (llama.cpp has none: it
    # parses the arguments to mappings before rendering, tests/chat/test_llama_cpp_jinja.py).
    assert _env(from_json=json.loads).render(**kwargs) == want


def test_unknown_role_is_an_error():
    with pytest.raises(ValueError, match="unknown role"):
        _env().render(messages=[{"role": "narrator", "content": "x"}], raise_exception=_raise)
    with pytest.raises(chat.ChatFormatError, match="unknown role 'narrator'"):
        chat.encode_messages([{"role": "narrator", "content": "x"}])
    with pytest.raises(chat.ChatFormatError, match="developer message needs non-empty content"):
        chat.encode_messages([{"role": "developer", "content": ""}])


@pytest.mark.parametrize("thinking_mode", ["chat", "thinking"])
@pytest.mark.parametrize("split", [1, 2, 3])
def test_context_continuation(oracle, corpus, thinking_mode, split):
    for name in ("tool-roundtrip-answer", "long-history-no-tools", "multi-round-reordered", "developer-then-user"):
        msgs = corpus.oracle_messages(_conv(corpus, name))
        context, rest = msgs[:split], msgs[split:]
        want = oracle.encode_messages(rest, thinking_mode, context=context)
        assert chat.encode_messages(rest, thinking_mode, context=context) == want, name


@pytest.mark.parametrize("thinking_mode", ["chat", "thinking"])
def test_keep_thinking_and_no_bos(oracle, corpus, thinking_mode):
    for conv in corpus.CONVERSATIONS:
        msgs = corpus.oracle_messages(conv)
        for kwargs in ({"drop_thinking": False}, {"add_default_bos_token": False}):
            assert chat.encode_messages(msgs, thinking_mode, **kwargs) == oracle.encode_messages(
                msgs, thinking_mode, **kwargs
            )


def test_tasks_and_open_turns(oracle):
    for task in ("action", "query", "authority", "domain", "title", "read_url"):
        msgs = [{"role": "user", "content": "classify", "task": task}, {"role": "assistant", "content": "x"}]
        for mode in ("chat", "thinking"):
            assert chat.encode_messages(msgs, mode) == oracle.encode_messages(msgs, mode)
            assert chat.encode_messages(msgs[:1], mode) == oracle.encode_messages(msgs[:1], mode)
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "partial", "wo_eos": True}]
    assert chat.encode_messages(msgs, "thinking") == oracle.encode_messages(msgs, "thinking")
    with pytest.raises(chat.ChatFormatError, match="unknown task"):
        chat.encode_messages([{"role": "user", "content": "q", "task": "nope"}])


def test_template_is_generated_from_chat_constants():
    jinja, go = jinja_template(), ollama_template()
    # Every fixed text appears once, as data, so editing chat.py's constants edits both templates.
    assert jinja.count('{%- set TOOLS_PREFIX = "## Tools') == 1
    assert json.dumps(chat.TOOLS_PREFIX, ensure_ascii=False) in go
    assert json.dumps(chat.REASONING_EFFORT_MAX, ensure_ascii=False) in go
    assert "{%- set REASONING_EFFORT_MAX" in jinja
