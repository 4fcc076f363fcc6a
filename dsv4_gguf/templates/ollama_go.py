"""Generates the Ollama Modelfile TEMPLATE (Go text/template) from the constants in `dsv4_gguf.chat`.

Input is Ollama's template data: `.Messages` (Role, Content, Thinking, ToolCalls{ID, Function{Name,
Arguments}}, ToolCallID), `.Tools`, `.Think`, `.ThinkLevel` ("max" selects Think Max). Go templates have no
lists or arithmetic, so tool results are ranked with nested loops and string-length counters, JSON is
written by recursive `define`s dispatching on `printf "%T"`, and a turn's transition is emitted when the
next kept turn is seen. What Ollama's data cannot carry is not rendered: argument and property order (Go
maps range sorted), `response_format`, a last assistant turn is left open (Ollama continues it).
"""

from __future__ import annotations

import json

from .. import chat

_USER_LIKE = '(or (eq {v}.Role "user") (eq {v}.Role "tool"))'


def _lit(text: str) -> str:
    # A JSON string literal is a valid Go interpreted string literal for everything json.dumps emits.
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"


def _defines() -> str:
    d = chat.DSML
    esc = "".join(
        f'{{{{- else if eq $b {code} -}}}}{{{{ "{rep}" }}}}'
        for code, rep in (
            (34, '\\\\\\"'),
            (92, "\\\\\\\\"),
            (10, "\\\\n"),
            (13, "\\\\r"),
            (9, "\\\\t"),
            (8, "\\\\b"),
            (12, "\\\\f"),
        )
    )
    return (
        # jstr: a JSON string exactly as json.dumps(ensure_ascii=False) writes it.
        '{{- define "jstr" -}}{{ "\\"" }}'
        '{{- if eq (printf "%q" .) (printf "%s%s%s" "\\"" . "\\"") -}}{{ . }}'
        "{{- else -}}{{- $s := . -}}{{- range $k := len $s -}}{{- $b := index $s $k -}}"
        "{{- if false -}}" + esc + '{{- else if lt $b 32 -}}{{ printf "\\\\u%04x" $b }}'
        '{{- else -}}{{ slice $s $k (len (printf "%s_" (slice $s 0 $k))) }}{{- end -}}{{- end -}}{{- end -}}'
        '{{ "\\"" }}{{- end -}}\n'
        # jval: any decoded JSON value (maps range in sorted key order, as Go does).
        '{{- define "jval" -}}{{- $t := printf "%T" . -}}'
        '{{- if eq $t "string" -}}{{- template "jstr" . -}}'
        '{{- else if eq $t "map[string]interface {}" -}}{{ "{" }}{{- $f := true -}}{{- range $k, $v := . -}}'
        '{{- if not $f -}}{{ ", " }}{{- end -}}{{- $f = false -}}{{- template "jstr" $k -}}{{ ": " }}'
        '{{- template "jval" $v -}}{{- end -}}{{ "}" }}'
        '{{- else if eq $t "[]interface {}" -}}{{ "[" }}{{- range $i, $v := . -}}{{- if $i -}}{{ ", " }}{{- end -}}'
        '{{- template "jval" $v -}}{{- end -}}{{ "]" }}'
        '{{- else if eq $t "<nil>" -}}{{ "null" }}{{- else -}}{{ json . }}{{- end -}}{{- end -}}\n'
        # tools: the TOOLS block; schemas in the order name, description, parameters{type, properties, required}.
        '{{- define "tools" -}}' + _lit(chat.TOOLS_PREFIX) + "{{- range $q, $t := . -}}"
        '{{- if $q -}}{{ "\\n" }}{{- end -}}{{ "{\\"name\\": " }}{{- template "jstr" $t.Function.Name -}}'
        '{{ ", \\"description\\": " }}{{- template "jstr" $t.Function.Description -}}'
        '{{ ", \\"parameters\\": {\\"type\\": " }}{{- template "jstr" $t.Function.Parameters.Type -}}'
        '{{ ", \\"properties\\": {" }}{{- $f := true -}}{{- range $k, $p := $t.Function.Parameters.Properties -}}'
        '{{- if not $f -}}{{ ", " }}{{- end -}}{{- $f = false -}}{{- template "jstr" $k -}}{{ ": {\\"type\\": " }}'
        '{{- if eq (len $p.Type) 1 -}}{{- template "jstr" (index $p.Type 0) -}}{{- else -}}{{ "[" }}'
        '{{- range $z, $x := $p.Type -}}{{- if $z -}}{{ ", " }}{{- end -}}{{- template "jstr" $x -}}{{- end -}}'
        '{{ "]" }}{{- end -}}'
        '{{- if $p.Description -}}{{ ", \\"description\\": " }}{{- template "jstr" $p.Description -}}{{- end -}}'
        '{{- if $p.Enum -}}{{ ", \\"enum\\": [" }}{{- range $z, $x := $p.Enum -}}{{- if $z -}}{{ ", " }}{{- end -}}'
        '{{- template "jval" $x -}}{{- end -}}{{ "]" }}{{- end -}}'
        '{{- if $p.Items -}}{{ ", \\"items\\": " }}{{- template "jval" $p.Items -}}{{- end -}}{{ "}" }}{{- end -}}'
        '{{ "}" }}{{- if $t.Function.Parameters.Required -}}{{ ", \\"required\\": [" }}'
        '{{- range $z, $x := $t.Function.Parameters.Required -}}{{- if $z -}}{{ ", " }}{{- end -}}'
        '{{- template "jstr" $x -}}{{- end -}}{{ "]" }}{{- end -}}{{ "}}" }}{{- end -}}'
        + _lit(chat.TOOLS_SUFFIX)
        + "{{- end -}}\n"
        # calls: the DSML tool-call block of one assistant turn.
        '{{- define "calls" -}}' + _lit(chat.TOOL_CALLS_OPEN) + "{{- range $q, $c := . -}}"
        '{{- if $q -}}{{ "\\n" }}{{- end -}}'
        + _lit(f'<{d}invoke name="')
        + "{{ $c.Function.Name }}"
        + _lit('">\n')
        + "{{- $f := true -}}{{- range $k, $v := $c.Function.Arguments -}}"
        '{{- if not $f -}}{{ "\\n" }}{{- end -}}{{- $f = false -}}'
        + _lit(f'<{d}parameter name="')
        + "{{ $k }}"
        + '{{- if eq (printf "%T" $v) "string" -}}'
        + _lit('" string="true">')
        + "{{ $v }}"
        + "{{- else -}}"
        + _lit('" string="false">')
        + '{{- template "jval" $v -}}{{- end -}}'
        + _lit(f"</{d}parameter>")
        + "{{- end -}}"
        + _lit(f"\n</{d}invoke>")
        + "{{- end -}}"
        + _lit(chat.TOOL_CALLS_CLOSE)
        + "{{- end -}}\n"
    )


def _key(member: str, out: str) -> str:
    """Sets `out` to the call position of tool result `member` in the latest calling turn (0 if unknown)."""
    return (
        f"{{{{- {out} := 0 -}}}}{{{{- if ge $callsAt 0 -}}}}"
        f"{{{{- range $q, $tc := (index $msgs $callsAt).ToolCalls -}}}}"
        f"{{{{- if and $tc.ID (eq $tc.ID {member}.ToolCallID) -}}}}{{{{- {out} = $q -}}}}{{{{- end -}}}}"
        "{{- end -}}{{- end -}}"
    )


def _user_group() -> str:
    user_like = _USER_LIKE
    # The t-th result slot of the run receives the result whose stable rank by call position is t.
    return (
        _lit(chat.USER) + '{{- $first := true -}}{{- $run := true -}}{{- $slot := "" -}}'
        "{{- range $j, $b := slice $msgs $i -}}"
        f"{{{{- if and $run {user_like.format(v='$b')} -}}}}"
        '{{- if not $first -}}{{ "\\n\\n" }}{{- end -}}{{- $first = false -}}'
        '{{- if eq $b.Role "user" -}}{{ $b.Content }}{{- else -}}'
        "{{- $run2 := true -}}{{- range $j2, $c := slice $msgs $i -}}"
        f"{{{{- if and $run2 {user_like.format(v='$c')} -}}}}"
        '{{- if eq $c.Role "tool" -}}' + _key("$c", "$kc") + '{{- $rank := "" -}}{{- $run3 := true -}}'
        "{{- range $j3, $e := slice $msgs $i -}}"
        f"{{{{- if and $run3 {user_like.format(v='$e')} -}}}}"
        '{{- if eq $e.Role "tool" -}}'
        + _key("$e", "$ke")
        + '{{- if or (lt $ke $kc) (and (eq $ke $kc) (lt $j3 $j2)) -}}{{- $rank = printf "%s." $rank -}}{{- end -}}'
        "{{- end -}}{{- else -}}{{- $run3 = false -}}{{- end -}}{{- end -}}"
        "{{- if eq (len $rank) (len $slot) -}}"
        + _lit(chat.TOOL_RESULT_OPEN)
        + "{{ $c.Content }}"
        + _lit(chat.TOOL_RESULT_CLOSE)
        + "{{- end -}}"
        "{{- end -}}{{- else -}}{{- $run2 = false -}}{{- end -}}{{- end -}}"
        '{{- $slot = printf "%s." $slot -}}'
        "{{- end -}}{{- else -}}{{- $run = false -}}{{- end -}}{{- end -}}"
    )


def ollama_template() -> str:
    """The Modelfile TEMPLATE text."""
    head = "{{- /* DeepSeek-V4 chat template, generated by dsv4_gguf.chat; equals encoding_dsv4.py */ -}}\n"
    setup = (
        "{{- $msgs := .Messages -}}{{- $think := .Think -}}{{- $drop := not .Tools -}}"
        "{{- $last := -1 -}}{{- $prevUser := false -}}"
        "{{- range $i, $m := $msgs -}}"
        f"{{{{- $u := {_USER_LIKE.format(v='$m')} -}}}}"
        '{{- if or (eq $m.Role "developer") (and $u (not $prevUser)) -}}{{- $last = $i -}}{{- end -}}'
        "{{- $prevUser = $u -}}{{- end -}}\n"
        + _lit(chat.BOS)
        + '{{- if and $think (eq .ThinkLevel "max") $msgs -}}'
        + _lit(chat.REASONING_EFFORT_MAX)
        + "{{- end -}}"
        '{{- if and .Tools (or (not $msgs) (ne (index $msgs 0).Role "system")) -}}{{ "\\n\\n" }}'
        '{{- template "tools" .Tools -}}{{- end -}}\n'
    )
    loop = (
        '{{- $prevUser = false -}}{{- $callsAt := -1 -}}{{- $pending := "" -}}'
        "{{- range $i, $m := $msgs -}}"
        f"{{{{- $u := {_USER_LIKE.format(v='$m')} -}}}}"
        "{{- $start := not (and $u $prevUser) -}}{{- $prevUser = $u -}}"
        '{{- $dropped := and $think $drop (eq $m.Role "developer") (lt $i $last) -}}'
        "{{- if and $start (not $dropped) -}}\n"
        '{{- if and $pending (or (eq $m.Role "assistant") (eq $m.Role "latest_reminder")) -}}{{ $pending }}'
        '{{- end -}}{{- $pending = "" -}}\n'
        '{{- if eq $m.Role "system" -}}{{ $m.Content }}'
        '{{- if and (eq $i 0) $.Tools -}}{{ "\\n\\n" }}{{- template "tools" $.Tools -}}{{- end -}}\n'
        '{{- else if eq $m.Role "developer" -}}' + _lit(chat.USER) + "{{ $m.Content }}\n"
        "{{- else if $u -}}" + _user_group() + "\n"
        '{{- else if eq $m.Role "latest_reminder" -}}' + _lit(chat.LATEST_REMINDER) + "{{ $m.Content }}\n"
        '{{- else if eq $m.Role "assistant" -}}'
        "{{- if and $think (or (not $drop) (gt $i $last)) -}}{{ $m.Thinking }}" + _lit(chat.THINK_END) + "{{- end -}}"
        "{{ $m.Content }}"
        '{{- if $m.ToolCalls -}}{{- $callsAt = $i -}}{{- template "calls" $m.ToolCalls -}}{{- end -}}'
        "{{- if ne (len (slice $msgs $i)) 1 -}}" + _lit(chat.EOS) + "{{- end -}}\n"
        "{{- end -}}\n"
        '{{- if or $u (eq $m.Role "developer") -}}'
        "{{- if and $think (or (not $drop) (ge $i $last)) -}}"
        + "{{- $pending = "
        + json.dumps(chat.ASSISTANT + chat.THINK_START, ensure_ascii=False)
        + " -}}"
        + "{{- else -}}{{- $pending = "
        + json.dumps(chat.ASSISTANT + chat.THINK_END, ensure_ascii=False)
        + " -}}"
        "{{- end -}}{{- end -}}\n"
        "{{- end -}}{{- end -}}\n"
        "{{- if $pending -}}{{ $pending }}{{- end -}}\n"
    )
    return head + _defines() + setup + loop
