"""Conversation corpus for the chat-encoding tests, plus the converters to each renderer's input.

Conversations are OpenAI-style (tool-call arguments as JSON strings, tools at top level). Tool schemas are
written in the key order Ollama's structs re-create (name, description, parameters{type, properties in
sorted order, required}; properties {type, description, enum, items}) and arguments in sorted key order, so
Ollama's data can carry them; cases Ollama cannot carry are marked `ollama=False` with the reason.
"""

from __future__ import annotations

import copy
import json
from typing import Any


def fn_tool(name: str, description: str, props: dict[str, dict[str, Any]], required: list[str]) -> dict:
    params: dict[str, Any] = {"type": "object", "properties": dict(sorted(props.items()))}
    if required:
        params["required"] = required
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


WEATHER = fn_tool(
    "get_weather",
    "Get the current weather for a city.",
    {
        "city": {"type": "string", "description": 'City name, e.g. "Paris"'},
        "unit": {"type": "string", "description": "Temperature unit", "enum": ["celsius", "fahrenheit"]},
    },
    ["city"],
)
SEARCH = fn_tool(
    "web_search",
    "Search the web.\nReturns the top results.",
    {
        "filters": {"type": "object", "description": "Optional filters"},
        "k": {"type": "integer", "description": "How many results"},
        "query": {"type": "string", "description": "Query text"},
        "sites": {"type": "array", "description": "Restrict to sites", "items": {"type": "string"}},
    },
    ["query"],
)
CALC = fn_tool("calculator", "Evaluate an arithmetic expression.", {"expr": {"type": "string"}}, ["expr"])
CLOCK = fn_tool("now", "Current time (no arguments).", {}, [])
NOTE = fn_tool(
    "save_note",
    'Save a note — supports unicode ✓ and "quotes".',
    {"tags": {"type": ["array", "null"], "items": {"type": "string"}}, "text": {"type": "string"}},
    ["text"],
)


def call(cid: str, name: str, **args: Any) -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def sysm(text: str) -> dict:
    return {"role": "system", "content": text}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def asst(text: str | None, reasoning: str | None = None, calls: list[dict] | None = None) -> dict:
    m: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning is not None:
        m["reasoning_content"] = reasoning
    if calls:
        m["tool_calls"] = calls
    return m


def tool(cid: str, text: str) -> dict:
    return {"role": "tool", "tool_call_id": cid, "content": text}


def case(cid: str, messages: list[dict], tools: list[dict] | None = None, ollama: bool | str = True) -> dict:
    return {"id": cid, "messages": messages, "tools": tools, "ollama": ollama}


SYS = sysm("You are a helpful assistant.")
CONVERSATIONS: list[dict] = [
    case("single-user", [user("Hello")]),
    case("system-user", [SYS, user("What is 2+2?")]),
    case(
        "spec-example-2",
        [
            SYS,
            user("Hello"),
            asst("Hi there! How can I help you?", "The user greets."),
            user("What is the capital of France?"),
        ],
    ),
    case("two-turns-reasoning", [SYS, user("Q1"), asst("A1", "R1"), user("Q2"), asst("A2", "R2"), user("Q3")]),
    case("ends-with-assistant", [SYS, user("Q1"), asst("A1", "R1")]),
    case("ends-with-assistant-multi", [user("Q1"), asst("A1", "R1"), user("Q2"), asst("A2", "R2")]),
    case("empty-user", [user("")]),
    case("empty-system", [sysm(""), user("hi")]),
    case("empty-assistant", [user("Q1"), asst(""), user("Q2")]),
    case("none-assistant-content", [user("Q1"), asst(None, "only thinking"), user("Q2")]),
    case(
        "unicode",
        [
            sysm("Réponds en français. 日本語もOK 🙂"),
            user("Ça va? 你好 👨‍👩‍👧 \u200b"),
            asst("Très bien — merci ✓", "思考中…"),
            user("¿Y tú? Ω≈ç√∫"),
        ],
    ),
    case("newlines-and-markup", [user("Line1\n\nLine2\n```py\nprint('x')\n```\n<b>bold</b> & \"q\"")]),
    case("consecutive-users", [SYS, user("part one"), user("part two")]),
    case(
        "latest-reminder-before-user",
        [SYS, {"role": "latest_reminder", "content": "Today is 2026-11-29."}, user("What day is it?")],
    ),
    case(
        "latest-reminder-after-user",
        [SYS, user("What day is it?"), {"role": "latest_reminder", "content": "Be brief."}],
    ),
    case(
        "latest-reminder-mid", [user("Q1"), asst("A1", "R1"), {"role": "latest_reminder", "content": "rem"}, user("Q2")]
    ),
    case("developer-last", [SYS, {"role": "developer", "content": "Search for the latest news."}]),
    case(
        "developer-then-user",
        [{"role": "developer", "content": "dev instructions"}, user("Q1"), asst("A1", "R1"), user("Q2")],
    ),
    case(
        "developer-before-assistant",
        [user("Q1"), {"role": "developer", "content": "dev note"}, asst("A1", "R1"), user("Q2")],
    ),
    case("tools-system", [SYS, user("Weather in Paris?")], [WEATHER]),
    case("tools-no-system", [user("Weather in Paris?")], [WEATHER]),
    case("tools-many", [sysm("Use tools when useful."), user("Find news")], [WEATHER, SEARCH, CALC, CLOCK, NOTE]),
    case(
        "tool-call-pending",
        [SYS, user("Weather in Paris?"), asst("", "Need the tool.", [call("c1", "get_weather", city="Paris")])],
        [WEATHER],
    ),
    case(
        "tool-roundtrip",
        [
            SYS,
            user("Weather in Paris?"),
            asst("", "Need weather.", [call("c1", "get_weather", city="Paris", unit="celsius")]),
            tool("c1", "18°C, sunny"),
        ],
        [WEATHER],
    ),
    case(
        "tool-roundtrip-answer",
        [
            SYS,
            user("Weather in Paris?"),
            asst("Let me check.", "Need weather.", [call("c1", "get_weather", city="Paris")]),
            tool("c1", "18°C"),
            asst("It is 18°C in Paris.", "Got it."),
            user("And Rome?"),
        ],
        [WEATHER],
    ),
    case(
        "parallel-calls-ordered",
        [
            SYS,
            user("Weather in Paris and Rome?"),
            asst("", "two calls", [call("a", "get_weather", city="Paris"), call("b", "get_weather", city="Rome")]),
            tool("a", "18C"),
            tool("b", "25C"),
        ],
        [WEATHER],
    ),
    case(
        "parallel-calls-reordered",
        [
            SYS,
            user("Weather in Paris, Rome, Oslo?"),
            asst(
                "",
                "three calls",
                [
                    call("a", "get_weather", city="Paris"),
                    call("b", "get_weather", city="Rome"),
                    call("c", "get_weather", city="Oslo"),
                ],
            ),
            tool("c", "2C"),
            tool("a", "18C"),
            tool("b", "25C"),
        ],
        [WEATHER],
    ),
    case(
        "results-then-user-text",
        [
            user("Weather?"),
            asst(None, "r", [call("x", "get_weather", city="Oslo"), call("y", "get_weather", city="Bergen")]),
            tool("y", "rain"),
            tool("x", "snow"),
            user("Summarize please."),
        ],
        [WEATHER],
    ),
    case(
        "typed-arguments",
        [
            user("search"),
            asst(
                "",
                "typed",
                [
                    call(
                        "s1",
                        "web_search",
                        filters={"lang": "en", "safe": True},
                        k=5,
                        query='gguf "quant"\nformat',
                        sites=["a.org", "b.io"],
                    )
                ],
            ),
            tool("s1", "[results]"),
        ],
        [SEARCH],
    ),
    case(
        "null-float-bool-args",
        [
            user("note it"),
            asst("", None, [call("n1", "save_note", tags=None, text="x = 0.25 ✓", weight=0.5)]),
            tool("n1", "ok"),
            user("thanks"),
        ],
        [NOTE],
    ),
    case("empty-arguments", [user("time?"), asst("", "no args", [call("t1", "now")]), tool("t1", "12:00")], [CLOCK]),
    case(
        "calls-without-ids",
        [
            user("two times"),
            asst(
                "",
                "",
                [
                    {"type": "function", "function": {"name": "now", "arguments": "{}"}},
                    {"type": "function", "function": {"name": "now", "arguments": "{}"}},
                ],
            ),
            {"role": "tool", "content": "first"},
            {"role": "tool", "content": "second"},
        ],
        [CLOCK],
    ),
    case(
        "unknown-result-id",
        [
            user("go"),
            asst("", "", [call("a", "now"), call("b", "now")]),
            tool("b", "B"),
            tool("zz", "Z"),
            tool("a", "A"),
        ],
        [CLOCK],
    ),
    case(
        "two-call-rounds",
        [
            SYS,
            user("Paris then Rome"),
            asst("", "first", [call("p", "get_weather", city="Paris")]),
            tool("p", "18C"),
            asst("", "second", [call("r", "get_weather", city="Rome")]),
            tool("r", "25C"),
            asst("Paris 18C, Rome 25C.", "done"),
        ],
        [WEATHER],
    ),
    case(
        "multi-round-reordered",
        [
            user("q"),
            asst("", "1", [call("a", "now"), call("b", "now")]),
            tool("b", "b1"),
            tool("a", "a1"),
            asst("", "2", [call("c", "now"), call("d", "now")]),
            tool("d", "d1"),
            tool("c", "c1"),
        ],
        [CLOCK],
    ),
    case(
        "calls-with-content",
        [
            user("calc"),
            asst("I will compute.", "use calc", [call("k", "calculator", expr="6*7")]),
            tool("k", "42"),
            asst("The answer is 42.", "done"),
            user("Thanks!"),
        ],
        [CALC],
    ),
    case(
        "tool-result-multiline",
        [user("read"), asst("", "", [call("f", "calculator", expr="1/3")]), tool("f", "line1\nline2\n\n<tag>")],
        [CALC],
    ),
    case("tool-result-empty", [user("x"), asst("", "", [call("e", "now")]), tool("e", "")], [CLOCK]),
    case(
        "long-history-no-tools",
        [SYS] + [m for i in range(4) for m in (user(f"U{i}"), asst(f"A{i}", f"R{i}"))] + [user("last")],
    ),
    case("reasoning-with-markup", [user("Q"), asst("A", "<think>? no, just text </b>"), user("Q2")]),
    case("assistant-no-reasoning-key", [user("Q"), asst("A"), user("Q2")]),
    case(
        "reminder-and-tools", [SYS, {"role": "latest_reminder", "content": "Use celsius."}, user("Weather?")], [WEATHER]
    ),
    case(
        "developer-with-tools-after",
        [
            SYS,
            {"role": "developer", "content": "Use the tools."},
            asst("", "", [call("w", "get_weather", city="Lima")]),
            tool("w", "20C"),
            user("and now?"),
        ],
        [WEATHER],
    ),
    # Cases Ollama's template data cannot carry (the chat.py and Jinja renderers still must match).
    case(
        "response-format",
        [
            {
                "role": "system",
                "content": "Reply in JSON.",
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "a", "schema": {"type": "object", "properties": {"b": {"type": "string"}}}},
                },
            },
            user("go"),
        ],
        ollama="Ollama has no response_format in its template data",
    ),
    case(
        "unsorted-arguments",
        [user("w"), asst("", "", [call("u", "get_weather", unit="celsius", city="Paris")]), tool("u", "ok")],
        [WEATHER],
        ollama="Go maps range in sorted key order",
    ),
    case(
        "two-system-messages",
        [sysm("A"), sysm("B"), user("hi")],
        ollama="Ollama joins consecutive system messages with a blank line",
    ),
    case(
        "tool-result-parts",
        [
            user("p"),
            asst("", "", [call("p1", "now")]),
            {
                "role": "tool",
                "tool_call_id": "p1",
                "content": [{"type": "text", "text": "part 1"}, {"type": "text", "text": "part 2"}],
            },
        ],
        [CLOCK],
        ollama="Ollama tool content is a plain string",
    ),
]

MODES = {"non-think": ("chat", None), "think-high": ("thinking", "high"), "think-max": ("thinking", "max")}


def oracle_messages(conv: dict) -> list[dict]:
    """The official encoder takes tools on the leading system message."""
    msgs = copy.deepcopy(conv["messages"])
    if conv["tools"]:
        if msgs and msgs[0]["role"] == "system":
            msgs[0]["tools"] = conv["tools"]
        else:
            msgs.insert(0, {"role": "system", "content": "", "tools": conv["tools"]})
    return msgs


def hf_messages(conv: dict) -> list[dict]:
    """HF convention: tool-call arguments as mappings."""
    msgs = copy.deepcopy(conv["messages"])
    for m in msgs:
        for c in m.get("tool_calls") or []:
            c["function"]["arguments"] = json.loads(c["function"]["arguments"])
    return msgs


def ollama_case(conv: dict, mode: str, effort: str | None) -> dict:
    """Ollama's /api/chat request data as its server hands it to the template."""
    msgs = []
    for m in conv["messages"]:
        calls = [
            {
                "id": c.get("id", ""),
                "function": {
                    "index": i,
                    "name": c["function"]["name"],
                    "arguments": json.loads(c["function"]["arguments"]),
                },
            }
            for i, c in enumerate(m.get("tool_calls") or [])
        ]
        msgs.append(
            {
                "role": m["role"],
                "content": m.get("content") or "",
                "thinking": m.get("reasoning_content") or "",
                "tool_calls": calls,
                "tool_call_id": m.get("tool_call_id", ""),
            }
        )
    return {
        "messages": msgs,
        "tools": conv["tools"] or [],
        "think": mode == "thinking",
        "think_level": effort or "",
        "is_think_set": True,
    }


def ollama_oracle_messages(conv: dict) -> list[dict]:
    """Ollama continues a trailing assistant turn: the official encoder's `wo_eos` form of it."""
    msgs = oracle_messages(conv)
    if msgs and msgs[-1]["role"] == "assistant":
        msgs[-1]["wo_eos"] = True
    return msgs
