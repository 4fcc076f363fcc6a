"""Bad requests get a 4xx JSON error in the API's own shape, and the next good request succeeds: malformed
JSON, unknown model, over-long prompt, invalid tool schema, bad sampling values, over-limit max_tokens and
body size, wrong or missing API key."""

from __future__ import annotations

import httpx
import pytest
from support.serving import NAME, start_server

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
CTX = 512


@pytest.fixture(scope="module")
def server(serve_gguf):
    srv = start_server(serve_gguf, parallel=1, ctx=CTX, api_key=KEY, max_body=32768, max_tokens=64)
    yield srv
    srv.stop()


def _chat(**over):
    return {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0, **over}


GOOD = {
    "openai": ("/v1/chat/completions", _chat()),
    "anthropic": ("/v1/messages", {"model": NAME, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}),
    "ollama": ("/api/chat", {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "stream": False}),
}

TOOL_BAD = [{"type": "function", "function": {"name": "f", "parameters": "not a schema"}}]
LONG = "word " * 2000  # far more than CTX tokens

BAD = [
    # (api, path, body or raw bytes, status, words in the message)
    ("openai", "/v1/chat/completions", b"{not json", 400, "not valid JSON"),
    ("openai", "/v1/chat/completions", b"[" * 30000, 400, "not valid JSON"),  # nesting deeper than the parser's
    ("openai", "/v1/chat/completions", _chat(model="gpt-4o"), 404, "not served here"),
    ("openai", "/v1/chat/completions", _chat(messages=[{"role": "user", "content": LONG}]), 400, "context"),
    ("openai", "/v1/chat/completions", _chat(tools=TOOL_BAD), 400, "parameters"),
    (
        "openai",
        "/v1/chat/completions",
        _chat(tools=[{"type": "function", "function": {"name": "bad name!"}}]),
        400,
        "name",
    ),
    ("openai", "/v1/chat/completions", _chat(temperature=-1), 400, "temperature"),
    ("openai", "/v1/chat/completions", _chat(top_p=1.5), 400, "top_p"),
    ("openai", "/v1/chat/completions", _chat(temperature="hot"), 400, "temperature"),
    ("openai", "/v1/chat/completions", _chat(max_tokens=10_000), 400, "--max-tokens"),
    ("openai", "/v1/chat/completions", _chat(max_tokens=0), 400, "max_tokens"),
    ("openai", "/v1/chat/completions", _chat(reasoning_effort="extreme"), 400, "reasoning_effort"),
    ("openai", "/v1/chat/completions", _chat(messages=[{"role": "wizard", "content": "x"}]), 400, "role"),
    ("openai", "/v1/chat/completions", _chat(messages="hi"), 400, "messages"),
    ("openai", "/v1/chat/completions", _chat(response_format={"type": "json_object"}), 400, "response_format"),
    (
        "openai",
        "/v1/chat/completions",
        _chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
        400,
        "text-only",
    ),
    (
        "openai",
        "/v1/chat/completions",
        {"model": NAME, "messages": [{"role": "user", "content": "x" * 40000}]},
        413,
        "--max-body",
    ),
    ("openai", "/v1/completions", {"model": NAME, "prompt": [5, 99999]}, 400, "vocabulary"),
    ("openai", "/v1/completions", {"model": NAME, "prompt": "hi", "logprobs": 99}, 400, "logprobs"),
    ("anthropic", "/v1/messages", b"[1, 2", 400, "not valid JSON"),
    ("anthropic", "/v1/messages", {"model": NAME, "messages": [{"role": "user", "content": "hi"}]}, 400, "max_tokens"),
    ("anthropic", "/v1/messages", {**GOOD["anthropic"][1], "model": "claude"}, 404, "not served here"),
    (
        "anthropic",
        "/v1/messages",
        {**GOOD["anthropic"][1], "tools": [{"name": "f", "input_schema": []}]},
        400,
        "input_schema",
    ),
    ("anthropic", "/v1/messages", {**GOOD["anthropic"][1], "temperature": 9}, 400, "temperature"),
    (
        "anthropic",
        "/v1/messages",
        {**GOOD["anthropic"][1], "messages": [{"role": "user", "content": LONG}]},
        400,
        "context",
    ),
    ("ollama", "/api/chat", b"nope", 400, "not valid JSON"),
    ("ollama", "/api/chat", {**GOOD["ollama"][1], "model": "llama3"}, 404, "not served here"),
    ("ollama", "/api/chat", {**GOOD["ollama"][1], "options": {"top_p": -1}}, 400, "top_p"),
    ("ollama", "/api/chat", {**GOOD["ollama"][1], "tools": TOOL_BAD}, 400, "parameters"),
    ("ollama", "/api/generate", {"model": NAME, "prompt": LONG, "stream": False}, 400, "context"),
    ("ollama", "/api/chat", {**GOOD["ollama"][1], "format": "json"}, 400, "format"),
]


def _message(api: str, body: dict) -> str:
    if api == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        return body["error"]["message"]
    if api == "ollama":
        assert set(body) == {"error"} and isinstance(body["error"], str)
        return body["error"]
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]["message"]


@pytest.mark.parametrize("case", BAD, ids=lambda c: f"{c[0]}-{c[3]}-{c[4]}")
def test_bad_request_then_good(server, case):
    api, path, body, status, words = case
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        r = c.post(path, content=body) if isinstance(body, bytes) else c.post(path, json=body)
        assert r.status_code == status, r.text
        assert words in _message(api, r.json())
        good_path, good = GOOD[api]
        ok = c.post(good_path, json=good)
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("api", list(GOOD))
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"x-api-key": "wrong"}], ids=["none", "bearer", "x-api-key"]
)
def test_wrong_api_key(server, api, headers):
    path, good = GOOD[api]
    r = httpx.post(server.url + path, json=good, headers=headers)
    assert r.status_code == 401 and "API key" in _message(api, r.json())
    assert httpx.post(server.url + path, json=good, headers=AUTH).status_code == 200
    assert httpx.post(server.url + path, json=good, headers={"x-api-key": KEY}).status_code == 200


def test_clients_see_their_error_types(server):
    openai = pytest.importorskip("openai")
    anthropic = pytest.importorskip("anthropic")
    ollama = pytest.importorskip("ollama")
    with openai.OpenAI(base_url=server.v1, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    with openai.OpenAI(base_url=server.v1, api_key=KEY, max_retries=0) as c:
        with pytest.raises(openai.NotFoundError, match="not served here"):
            c.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError, match="temperature"):
            c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}], temperature=3)
        assert c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=2).choices
    with anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0) as a:
        with pytest.raises(anthropic.BadRequestError, match="context"):
            a.messages.create(model=NAME, max_tokens=4, messages=[{"role": "user", "content": LONG}])
    o = ollama.Client(host=server.url, headers=AUTH)
    try:
        with pytest.raises(ollama.ResponseError, match="not served here") as e:
            o.chat(model="llama3", messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code == 404
        assert o.chat(model=NAME, messages=[{"role": "user", "content": "hi"}], options={"num_predict": 2}).done
    finally:
        o.close()
