"""DeepSeek-V4 chat encoding (DeepSeek's ``encoding/encoding_dsv4.py`` in the Hugging Face release):
messages -> prompt string, completion -> message.

One definition, three renderers: `encode_messages` here, and the Jinja (`tokenizer.chat_template`) and
Ollama Go templates that `dsv4_gguf.templates.jinja_template` / `ollama_template` generate from the
constants below (this module imports nothing from there); tests prove all three equal to DeepSeek's
`encoding_dsv4.py` on a corpus. No tokenization, nothing about GGUF; the internal search-agent `task`
tokens are supported here only.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BOS",
    "EOS",
    "USER",
    "ASSISTANT",
    "LATEST_REMINDER",
    "THINK_START",
    "THINK_END",
    "DSML",
    "TOOLS_PREFIX",
    "TOOLS_SUFFIX",
    "REASONING_EFFORT_MAX",
    "RESPONSE_FORMAT_PREFIX",
    "STOP_STRINGS",
    "ChatFormatError",
    "encode_messages",
    "render_tools",
    "to_json",
    "parse_completion",
]

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
LATEST_REMINDER = "<｜latest_reminder｜>"
THINK_START = "<think>"
THINK_END = "</think>"
DSML = "｜DSML｜"
TASK_TOKENS = {
    "action": "<｜action｜>",
    "query": "<｜query｜>",
    "authority": "<｜authority｜>",
    "domain": "<｜domain｜>",
    "title": "<｜title｜>",
    "read_url": "<｜read_url｜>",
}
# A generation stops at EOS; the runtimes also need it as a stop string because DSV4's GGUF marks no EOT.
STOP_STRINGS = (EOS,)

TOOL_CALLS_OPEN = f"\n\n<{DSML}tool_calls>\n"
TOOL_CALLS_CLOSE = f"\n</{DSML}tool_calls>"
TOOL_RESULT_OPEN = "<tool_result>"
TOOL_RESULT_CLOSE = "</tool_result>"
RESPONSE_FORMAT_PREFIX = "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n"

# The fixed texts below are the model's prompt format (data the model was trained on), reproduced verbatim.
TOOLS_PREFIX = (
    "## Tools\n\nYou have access to a set of tools to help answer the user's question. You can invoke tools "
    f'by writing a "<{DSML}tool_calls>" block like the following:\n\n'
    f"<{DSML}tool_calls>\n"
    f'<{DSML}invoke name="$TOOL_NAME">\n'
    f'<{DSML}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{DSML}parameter>\n'
    "...\n"
    f"</{DSML}invoke>\n"
    f'<{DSML}invoke name="$TOOL_NAME2">\n'
    "...\n"
    f"</{DSML}invoke>\n"
    f"</{DSML}tool_calls>\n\n"
    'String parameters should be specified as is and set `string="true"`. For all other types (numbers, '
    'booleans, arrays, objects), pass the value in JSON format and set `string="false"`.\n\n'
    f"If thinking_mode is enabled (triggered by {THINK_START}), you MUST output your complete reasoning "
    f"inside {THINK_START}...{THINK_END} BEFORE any tool calls or final response.\n\n"
    f"Otherwise, output directly after {THINK_END} with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n"
)
TOOLS_SUFFIX = "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n"
REASONING_EFFORT_MAX = (
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the "
    "root cause, rigorously stress-testing your logic against all potential paths, edge cases, and "
    "adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, "
    "considered alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked."
    "\n\n"
)

THINKING_MODES = ("chat", "thinking")
REASONING_EFFORTS = (None, "high", "max")


class ChatFormatError(ValueError):
    """A message list or a completion that does not follow the DSV4 chat format."""


def to_json(value: Any) -> str:
    """JSON exactly as the encoder writes it: Python separators, key order kept, non-ASCII kept."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except UnicodeEncodeError:  # lone surrogates: the encoder falls back to ASCII escapes
        return json.dumps(value, ensure_ascii=True)


def render_tools(tools: Sequence[Mapping[str, Any]]) -> str:
    """The TOOLS block for OpenAI-format tools (`{"type": "function", "function": {...}}`) or bare functions."""
    return TOOLS_PREFIX + "\n".join(to_json(_tool_function(t)) for t in tools) + TOOLS_SUFFIX


def _tool_function(tool: Mapping[str, Any]) -> Any:
    return tool["function"] if "function" in tool else tool


def _call_arguments(function: Mapping[str, Any]) -> dict[str, Any]:
    # OpenAI sends arguments as a JSON string, HF templates as a mapping. The encoder json-decodes the
    # string and falls back to {"arguments": raw} when that fails; a mapping is taken as already decoded.
    raw = function.get("arguments")
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        decoded = json.loads(raw)
    except (TypeError, ValueError):
        return {"arguments": raw}
    if not isinstance(decoded, dict):
        raise ChatFormatError(f"tool call {function.get('name')!r}: arguments must be a JSON object, got {raw!r}")
    return decoded


def _render_call(call: Mapping[str, Any]) -> str:
    function = call.get("function", call)
    params = [
        f'<{DSML}parameter name="{key}" string="{"true" if isinstance(value, str) else "false"}">'
        f"{value if isinstance(value, str) else to_json(value)}</{DSML}parameter>"
        for key, value in _call_arguments(function).items()
    ]
    return f'<{DSML}invoke name="{function.get("name")}">\n' + "\n".join(params) + f"\n</{DSML}invoke>"


def _tool_text(content: Any) -> Any:
    if isinstance(content, list):  # OpenAI content parts
        return "\n\n".join(
            p.get("text", "") if p.get("type") == "text" else f"[Unsupported {p.get('type')}]" for p in content
        )
    return content


def _merge_tool_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    # DSV4 has no tool role: every run of user/tool messages becomes one user message whose blocks
    # (text, or tool results carrying their call id) are joined by a blank line.
    merged: list[dict[str, Any]] = []
    for source in messages:
        msg = copy.deepcopy(dict(source))
        role = msg.get("role")
        if role == "tool":
            block = {
                "type": "tool_result",
                "id": msg.get("tool_call_id", ""),
                "content": msg.get("content", ""),
            }
        elif role == "user":
            block = {"type": "text", "text": msg.get("content", "")}
        else:
            merged.append(msg)
            continue
        prev = merged[-1] if merged else None
        # A user turn does not join a run that carries a task; a tool result always joins.
        joinable = role == "tool" or (prev is not None and prev.get("task") is None)
        if prev is not None and prev.get("role") == "user" and "blocks" in prev and joinable:
            prev["blocks"].append(block)
        else:
            new = {"role": "user", "blocks": [block]}
            for key in ("task", "wo_eos"):
                if role == "user" and key in msg:
                    new[key] = msg[key]
            merged.append(new)
    return merged


def _sort_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Results are put back in the order of the calls of the latest assistant turn that made calls;
    # unknown ids sort as position 0 and the sort is stable, exactly as the official encoder does.
    order: dict[str, int] = {}
    for msg in messages:
        if msg.get("role") == "assistant" and msg.get("tool_calls"):
            order = {}
            for pos, call in enumerate(msg["tool_calls"]):
                call_id = call.get("id") or call.get("function", {}).get("id", "")
                if call_id:
                    order[call_id] = pos
        elif msg.get("role") == "user" and msg.get("blocks") and order:
            results = [b for b in msg["blocks"] if b["type"] == "tool_result"]
            if len(results) > 1:
                ranked = iter(sorted(results, key=lambda b: order.get(b["id"], 0)))
                msg["blocks"] = [next(ranked) if b["type"] == "tool_result" else b for b in msg["blocks"]]
    return messages


def _last_user_index(messages: Sequence[Mapping[str, Any]]) -> int:
    for idx in range(len(messages) - 1, -1, -1):
        if messages[idx].get("role") in ("user", "developer"):
            return idx
    return -1


def _drop_thinking(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Before the last user turn: assistant reasoning is removed and developer turns disappear.
    last_user = _last_user_index(messages)
    kept = []
    for idx, msg in enumerate(messages):
        role = msg.get("role")
        if idx >= last_user or role in ("user", "system", "tool", "latest_reminder", "direct_search_results"):
            kept.append(msg)
        elif role == "assistant":
            kept.append({k: v for k, v in msg.items() if k != "reasoning_content"})
    return kept


def _with_tools_and_format(text: str, msg: Mapping[str, Any]) -> str:
    if msg.get("tools"):
        text += "\n\n" + render_tools(msg["tools"])
    if msg.get("response_format"):
        text += "\n\n" + RESPONSE_FORMAT_PREFIX + to_json(msg["response_format"])
    return text


def _render_user(msg: Mapping[str, Any]) -> str:
    parts = []
    for block in msg.get("blocks", ()):
        if block["type"] == "text":
            parts.append(block["text"])
        else:
            parts.append(f"{TOOL_RESULT_OPEN}{_tool_text(block['content'])}{TOOL_RESULT_CLOSE}")
    return USER + "\n\n".join(parts)


def _render_message(idx: int, messages: list[dict[str, Any]], thinking: bool, drop: bool, effort: str | None) -> str:
    msg = messages[idx]
    role = msg.get("role")
    last_user = _last_user_index(messages)
    out = REASONING_EFFORT_MAX if idx == 0 and thinking and effort == "max" else ""

    if role == "system":
        out += _with_tools_and_format(msg.get("content") or "", msg)
    elif role == "developer":
        if not msg.get("content"):
            raise ChatFormatError(f"message {idx}: a developer message needs non-empty content")
        out += _with_tools_and_format(USER + msg["content"], msg)
    elif role == "user":
        out += _render_user(msg)
    elif role == "latest_reminder":
        out += LATEST_REMINDER + str(msg.get("content"))
    elif role == "assistant":
        calls = msg.get("tool_calls") or []
        tail = TOOL_CALLS_OPEN + "\n".join(_render_call(c) for c in calls) + TOOL_CALLS_CLOSE if calls else ""
        after_task = idx > 0 and messages[idx - 1].get("task") is not None
        reasoning = ""
        if thinking and not after_task and (not drop or idx > last_user):
            reasoning = (msg.get("reasoning_content") or "") + THINK_END
        out += reasoning + (msg.get("content") or "") + tail + ("" if msg.get("wo_eos") else EOS)
    else:
        raise ChatFormatError(
            f"message {idx}: unknown role {role!r} (expected system, user, assistant, tool, "
            "developer or latest_reminder)"
        )

    if idx + 1 < len(messages) and messages[idx + 1].get("role") not in ("assistant", "latest_reminder"):
        return out
    task = msg.get("task")
    if task is not None:
        if task not in TASK_TOKENS:
            raise ChatFormatError(f"message {idx}: unknown task {task!r}; valid: {sorted(TASK_TOKENS)}")
        if task == "action":
            return out + ASSISTANT + (THINK_START if thinking else THINK_END) + TASK_TOKENS[task]
        return out + TASK_TOKENS[task]
    if role in ("user", "developer"):
        opens_thinking = thinking and (not drop or idx >= last_user)
        out += ASSISTANT + (THINK_START if opens_thinking else THINK_END)
    return out


def encode_messages(
    messages: Sequence[Mapping[str, Any]],
    thinking_mode: str = "chat",
    context: Sequence[Mapping[str, Any]] | None = None,
    drop_thinking: bool = True,
    add_default_bos_token: bool = True,
    reasoning_effort: str | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """Encode OpenAI-style messages into the DSV4 prompt, equal to `encoding_dsv4.encode_messages`.

    thinking_mode "chat" is Non-think, "thinking" is Think High, "thinking" + reasoning_effort "max" is
    Think Max. `context` is an already-encoded prefix: only `messages` are rendered (no BOS), but they are
    rendered as continuing it. `tools` (HF convention) are attached to the leading system message, or to
    an empty one inserted at the front. Tool-call arguments may be JSON strings or mappings.
    """
    if thinking_mode not in THINKING_MODES:
        raise ChatFormatError(f"thinking_mode must be one of {THINKING_MODES}, got {thinking_mode!r}")
    if reasoning_effort not in REASONING_EFFORTS:
        raise ChatFormatError(f"reasoning_effort must be one of {REASONING_EFFORTS}, got {reasoning_effort!r}")
    context = list(context or [])
    messages = list(messages)
    if tools:
        target = context if context else messages
        if target and target[0].get("role") == "system":
            target[0] = {**target[0], "tools": list(tools)}
        else:
            target.insert(0, {"role": "system", "content": "", "tools": list(tools)})

    merged_context = _sort_tool_results(_merge_tool_messages(context))
    full = _sort_tool_results(merged_context + _merge_tool_messages(messages))
    thinking = thinking_mode == "thinking"
    drop = drop_thinking and not any(m.get("tools") for m in full)
    if thinking and drop:
        full = _drop_thinking(full)
        start = len(_drop_thinking(merged_context)) if merged_context else 0
    else:
        start = len(merged_context)

    prompt = BOS if add_default_bos_token and not context else ""
    for idx in range(start, len(full)):
        prompt += _render_message(idx, full, thinking, drop, reasoning_effort)
    return prompt


# ---------------------------------------------------------------------------------------------------
# Completion parsing
# ---------------------------------------------------------------------------------------------------

_INVOKE = re.compile(rf'<{DSML}invoke name="([^"\n]*)">\n')
_PARAM = re.compile(rf'<{DSML}parameter name="([^"\n]*)" string="(true|false)">(.*?)</{DSML}parameter>', re.S)
_INVOKE_END = f"</{DSML}invoke>"
_CALLS_END = f"</{DSML}tool_calls>"


def _fail(text: str, pos: int, what: str) -> ChatFormatError:
    snippet = text[max(0, pos - 20) : pos + 40]
    return ChatFormatError(f"malformed DSV4 completion at offset {pos}: {what}; near {snippet!r}")


def _parse_calls(text: str, pos: int) -> tuple[list[dict[str, Any]], int]:
    calls: list[dict[str, Any]] = []
    while not text.startswith(_CALLS_END, pos):
        match = _INVOKE.match(text, pos)
        if match is None:
            raise _fail(text, pos, f'expected <{DSML}invoke name="..."> or {_CALLS_END}')
        name, pos = match.group(1), match.end()
        args: dict[str, tuple[str, str]] = {}
        if not text.startswith("\n" + _INVOKE_END, pos):
            while True:
                param = _PARAM.match(text, pos)
                if param is None:
                    raise _fail(text, pos, f'expected <{DSML}parameter name="..." string="true|false">')
                key, is_str, value = param.groups()
                if key in args:
                    raise _fail(text, pos, f"duplicate parameter {key!r} in call {name!r}")
                args[key] = (value, is_str)
                pos = param.end()
                if text.startswith("\n" + _INVOKE_END, pos):
                    break
                if not text.startswith("\n", pos):
                    raise _fail(text, pos, "expected a newline between parameters")
                pos += 1
        pos += 1 + len(_INVOKE_END)
        # Re-encode as the OpenAI JSON string, with non-string values copied through verbatim.
        body = ", ".join(f"{to_json(k)}: {to_json(v) if s == 'true' else v}" for k, (v, s) in args.items())
        calls.append({"type": "function", "function": {"name": name, "arguments": "{" + body + "}"}})
        if not text.startswith("\n", pos):
            raise _fail(text, pos, "expected a newline after </invoke>")
        pos += 1
    return calls, pos + len(_CALLS_END)


def parse_completion(text: str, thinking_mode: str = "chat", require_eos: bool = True) -> dict[str, Any]:
    """Split one generated assistant turn into reasoning, content and OpenAI-format tool calls.

    The text is what follows the prompt (`<think>` or `</think>` is part of the prompt). Raises
    ChatFormatError with the offset on malformed output. `require_eos=False` accepts a turn whose EOS was
    consumed as a stop string by the runtime.
    """
    if thinking_mode not in THINKING_MODES:
        raise ChatFormatError(f"thinking_mode must be one of {THINKING_MODES}, got {thinking_mode!r}")
    reasoning, pos = "", 0
    if thinking_mode == "thinking":
        end = text.find(THINK_END)
        calls_at = text.find(TOOL_CALLS_OPEN.rstrip("\n"))
        if end < 0 or 0 <= calls_at < end:
            raise _fail(text, 0, f"thinking output must close its reasoning with {THINK_END}")
        reasoning, pos = text[:end], end + len(THINK_END)
    calls_at = text.find(TOOL_CALLS_OPEN, pos)
    eos_at = text.find(EOS, pos)
    calls: list[dict[str, Any]] = []
    if calls_at >= 0 and (eos_at < 0 or calls_at < eos_at):
        content = text[pos:calls_at]
        calls, pos = _parse_calls(text, calls_at + len(TOOL_CALLS_OPEN))
    elif eos_at >= 0:
        content, pos = text[pos:eos_at], eos_at
    elif require_eos:
        raise _fail(text, len(text), f"missing {EOS}")
    else:
        content, pos = text[pos:], len(text)
    rest = text[pos:]
    if rest not in (EOS, "") or (require_eos and rest != EOS):
        raise _fail(text, pos, f"expected the turn to end with {EOS}")
    for token in (BOS, EOS, THINK_START, THINK_END, DSML):
        if token in content or token in reasoning:
            raise _fail(text, text.find(token), f"unexpected special token {token!r} inside the text")
    return {"role": "assistant", "content": content, "reasoning_content": reasoning, "tool_calls": calls}
