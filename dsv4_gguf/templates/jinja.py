"""Generates the Jinja `tokenizer.chat_template` from the constants in `dsv4_gguf.chat`.

The template reproduces `chat.encode_messages` for HF-style inputs (`messages`, `tools`,
`add_generation_prompt`, `thinking` / `enable_thinking`, `reasoning_effort`). It renders the same in plain
jinja2 and its sandbox (transformers, llama-cpp-python) and in llama.cpp's C++ engine (common/jinja: llama-server
--jinja, llama-cli): no `tojson` (engines disagree on it; a macro writes Python's `json.dumps` format), no list
mutation, no `break`, every tag trims whitespace so `trim_blocks` and `lstrip_blocks` change nothing, no
namespace attribute named like a mapping method (llama.cpp resolves `ns.keys` to the method `keys`), and an
undefined `add_generation_prompt` means false (llama.cpp passes it only when true). String tool-call arguments
need a `from_json` filter; llama.cpp has none but parses them to mappings before rendering.
Not covered: `context` continuation, `drop_thinking=False`, internal `task` tokens, `wo_eos`.
"""

from __future__ import annotations

from .. import chat


def _lit(text: str) -> str:
    """A Jinja string literal; only the escapes every engine (jinja2, llama.cpp, minja) understands."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# The JSON macro escapes what json.dumps(ensure_ascii=False) escapes, except the rare C0 controls other
# than \n \r \t (kept raw, since engine support for \uXXXX escapes in template literals varies).
_JSON_MACROS = r"""
{%- macro ds_str(s) -%}
{{- '"' ~ (s | string | replace("\\", "\\\\") | replace('"', '\\"') | replace("\n", "\\n")
    | replace("\r", "\\r") | replace("\t", "\\t")) ~ '"' -}}
{%- endmacro -%}
{%- macro ds_json(v) -%}
{%- if v is none -%}{{- "null" -}}
{%- elif v is boolean -%}{{- "true" if v else "false" -}}
{%- elif v is string -%}{{- ds_str(v) -}}
{%- elif v is number -%}{{- v | string -}}
{%- elif v is mapping -%}
{{- "{" -}}
{%- for k in v -%}{{- ", " if not loop.first else "" -}}{{- ds_str(k) ~ ": " ~ ds_json(v[k]) -}}{%- endfor -%}
{{- "}" -}}
{%- else -%}
{{- "[" -}}{%- for x in v -%}{{- ", " if not loop.first else "" -}}{{- ds_json(x) -}}{%- endfor -%}{{- "]" -}}
{%- endif -%}
{%- endmacro -%}
{%- macro ds_tools(t) -%}
{{- TOOLS_PREFIX -}}
{%- for tool in t -%}
{{- "\n" if not loop.first else "" -}}{{- ds_json(tool.function if tool.function is defined else tool) -}}
{%- endfor -%}
{{- TOOLS_SUFFIX -}}
{%- endmacro -%}
{%- macro ds_extras(m, t) -%}
{%- if t -%}{{- "\n\n" ~ ds_tools(t) -}}{%- endif -%}
{%- if m.response_format is defined and m.response_format -%}
{{- "\n\n" ~ RESPONSE_FORMAT_PREFIX ~ ds_json(m.response_format) -}}
{%- endif -%}
{%- endmacro -%}
{%- macro ds_tool_text(c) -%}
{%- if c is string or c is none -%}{{- c | string -}}
{%- else -%}
{%- for p in c -%}{{- "\n\n" if not loop.first else "" -}}
{{- p.text if p.type == "text" else "[Unsupported " ~ p.type ~ "]" -}}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
"""

_BODY = r"""
{%- set ds = namespace(think=false, effort=none, tools=none, drop=true, msgs=messages, starts=[], last=-1,
    kept=[], prev_user=false, ids=[], pending="", blocks=[], call_pos=[], ranked=[], run=true, k=0, t=0) -%}
{%- if thinking is defined and thinking is not none -%}{%- set ds.think = true if thinking else false -%}
{%- elif enable_thinking is defined and enable_thinking is not none -%}
{%- set ds.think = true if enable_thinking else false -%}
{%- endif -%}
{%- if reasoning_effort is defined and reasoning_effort is not none -%}
{%- if reasoning_effort not in ["high", "max"] -%}
{{- raise_exception("reasoning_effort must be none, \"high\" or \"max\", got " ~ reasoning_effort) -}}
{%- endif -%}
{%- set ds.effort = reasoning_effort -%}
{%- endif -%}
{%- set ds_gen = add_generation_prompt is defined and add_generation_prompt -%}
{%- if tools is defined and tools -%}{%- set ds.tools = tools -%}{%- endif -%}
{%- if ds.tools and (messages | length == 0 or messages[0].role != "system") -%}
{%- set ds.msgs = [{"role": "system", "content": ""}] + messages -%}
{%- endif -%}
{%- set ds.drop = not ds.tools -%}
{%- for m in ds.msgs -%}
{%- if m.tools is defined and m.tools -%}{%- set ds.drop = false -%}{%- endif -%}
{%- set user_like = m.role in ["user", "tool"] -%}
{%- if not (user_like and ds.prev_user) -%}
{%- set ds.starts = ds.starts + [loop.index0] -%}
{%- if m.role in ["user", "tool", "developer"] -%}{%- set ds.last = loop.index0 -%}{%- endif -%}
{%- endif -%}
{%- set ds.prev_user = user_like -%}
{%- endfor -%}
{%- for s in ds.starts -%}
{%- if not (ds.think and ds.drop and ds.msgs[s].role == "developer" and s < ds.last) -%}
{%- set ds.kept = ds.kept + [s] -%}
{%- endif -%}
{%- endfor -%}
{{- BOS -}}
{%- if ds.think and ds.effort == "max" and ds.kept -%}{{- REASONING_EFFORT_MAX -}}{%- endif -%}
{%- for s in ds.kept -%}
{%- set m = ds.msgs[s] -%}
{%- if ds.pending and m.role in ["assistant", "latest_reminder"] -%}{{- ds.pending -}}{%- endif -%}
{%- set ds.pending = "" -%}
{%- if m.role == "system" -%}
{{- m.content or "" -}}
{{- ds_extras(m, m.tools if (m.tools is defined and m.tools) else (ds.tools if s == 0 else none)) -}}
{%- elif m.role == "developer" -%}
{%- if not m.content -%}{{- raise_exception("a developer message needs non-empty content") -}}{%- endif -%}
{{- USER ~ m.content -}}
{{- ds_extras(m, m.tools if (m.tools is defined and m.tools) else none) -}}
{%- elif m.role in ["user", "tool"] -%}
{%- set ds.run = true -%}{%- set ds.blocks = [] -%}{%- set ds.call_pos = [] -%}{%- set ds.ranked = [] -%}
{%- for b in ds.msgs[s:] -%}
{%- if ds.run and b.role in ["user", "tool"] -%}
{%- set ds.k = 0 -%}
{%- if b.role == "tool" -%}
{%- for cid in ds.ids -%}
{%- if cid and b.tool_call_id is defined and cid == b.tool_call_id -%}{%- set ds.k = loop.index0 -%}{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- set ds.blocks = ds.blocks + [b] -%}{%- set ds.call_pos = ds.call_pos + [ds.k] -%}
{%- else -%}{%- set ds.run = false -%}
{%- endif -%}
{%- endfor -%}
{#- Tool results go back in call order (stable on the call position, unknown ids first). -#}
{%- for kv in range(ds.ids | length + 1) -%}
{%- for b in ds.blocks -%}
{%- if b.role == "tool" and ds.call_pos[loop.index0] == kv -%}{%- set ds.ranked = ds.ranked + [b] -%}{%- endif -%}
{%- endfor -%}
{%- endfor -%}
{%- set ds.t = 0 -%}
{{- USER -}}
{%- for b in ds.blocks -%}
{{- "\n\n" if not loop.first else "" -}}
{%- if b.role == "tool" -%}
{{- TOOL_RESULT_OPEN ~ ds_tool_text(ds.ranked[ds.t].content) ~ TOOL_RESULT_CLOSE -}}
{%- set ds.t = ds.t + 1 -%}
{%- else -%}{{- b.content -}}
{%- endif -%}
{%- endfor -%}
{%- elif m.role == "latest_reminder" -%}
{{- LATEST_REMINDER ~ (m.content | string) -}}
{%- elif m.role == "assistant" -%}
{%- if ds.think and (not ds.drop or s > ds.last) -%}
{{- (m.reasoning_content if m.reasoning_content is defined and m.reasoning_content else "") ~ THINK_END -}}
{%- endif -%}
{{- m.content or "" -}}
{%- if m.tool_calls is defined and m.tool_calls -%}
{%- set ds.ids = [] -%}
{{- TOOL_CALLS_OPEN -}}
{%- for tc in m.tool_calls -%}
{%- set ds.ids = ds.ids + [tc.id if tc.id is defined and tc.id else ""] -%}
{%- set f = tc.function if tc.function is defined else tc -%}
{%- set args = f.arguments if f.arguments is defined and f.arguments is not none else {} -%}
{%- if args is string -%}{%- set args = args | from_json -%}{%- endif -%}
{{- "\n" if not loop.first else "" -}}
{{- INVOKE_OPEN ~ f.name ~ "\">\n" -}}
{%- for k in args -%}
{{- "\n" if not loop.first else "" -}}
{%- if args[k] is string -%}{{- PARAM_OPEN ~ k ~ "\" string=\"true\">" ~ args[k] ~ PARAM_CLOSE -}}
{%- else -%}{{- PARAM_OPEN ~ k ~ "\" string=\"false\">" ~ ds_json(args[k]) ~ PARAM_CLOSE -}}
{%- endif -%}
{%- endfor -%}
{{- INVOKE_CLOSE -}}
{%- endfor -%}
{{- TOOL_CALLS_CLOSE -}}
{%- endif -%}
{{- EOS -}}
{%- else -%}
{{- raise_exception("unknown role " ~ m.role ~ " (expected system, user, assistant, tool, developer or "
    ~ "latest_reminder)") -}}
{%- endif -%}
{%- if m.role in ["user", "tool", "developer"] -%}
{%- set ds.pending = ASSISTANT ~ (THINK_START if ds.think and (not ds.drop or s >= ds.last) else THINK_END) -%}
{%- endif -%}
{%- endfor -%}
{%- if ds.pending and ds_gen -%}{{- ds.pending -}}{%- endif -%}
"""


def constants() -> dict[str, str]:
    """Every fixed text the templates emit, by the name the templates use."""
    return {
        "BOS": chat.BOS,
        "EOS": chat.EOS,
        "USER": chat.USER,
        "ASSISTANT": chat.ASSISTANT,
        "LATEST_REMINDER": chat.LATEST_REMINDER,
        "THINK_START": chat.THINK_START,
        "THINK_END": chat.THINK_END,
        "TOOLS_PREFIX": chat.TOOLS_PREFIX,
        "TOOLS_SUFFIX": chat.TOOLS_SUFFIX,
        "REASONING_EFFORT_MAX": chat.REASONING_EFFORT_MAX,
        "RESPONSE_FORMAT_PREFIX": chat.RESPONSE_FORMAT_PREFIX,
        "TOOL_RESULT_OPEN": chat.TOOL_RESULT_OPEN,
        "TOOL_RESULT_CLOSE": chat.TOOL_RESULT_CLOSE,
        "TOOL_CALLS_OPEN": chat.TOOL_CALLS_OPEN,
        "TOOL_CALLS_CLOSE": chat.TOOL_CALLS_CLOSE,
        "INVOKE_OPEN": f'<{chat.DSML}invoke name="',
        "INVOKE_CLOSE": f"\n</{chat.DSML}invoke>",
        "PARAM_OPEN": f'<{chat.DSML}parameter name="',
        "PARAM_CLOSE": f"</{chat.DSML}parameter>",
    }


def jinja_template() -> str:
    """The chat template text (constants inlined as `set` statements at the top)."""
    header = "{#- DeepSeek-V4 chat template, generated by dsv4_gguf.chat; equals encoding_dsv4.py -#}\n"
    sets = "".join(f"{{%- set {name} = {_lit(value)} -%}}\n" for name, value in constants().items())
    return header + sets + _JSON_MACROS.strip() + "\n" + _BODY.strip() + "\n"
