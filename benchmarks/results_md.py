"""Generated sections of benchmarks/RESULTS.md: each benchmark that writes one replaces only the text between its
own ``<!-- NAME:begin -->`` / ``<!-- NAME:end -->`` markers, and keeps the inputs of its format function in
``results/NAME.json`` next to the markdown file, so a test can render every generated section again and find
any hand edit between the markers.  Hand-written text goes outside all markers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MARKER = re.compile(r"^<!-- ([A-Za-z0-9_-]+):(begin|end) -->$", re.M)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def record_path(md: Path, name: str) -> Path:
    return Path(md).parent / "results" / f"{name}.json"


def sections(text: str) -> dict[str, str]:
    """Name -> the text between that section's markers (without the newlines next to them).  Raises ValueError
    on a marker without its partner, a section opened twice, or nested sections."""
    out: dict[str, str] = {}
    open_name, start = None, 0
    for m in MARKER.finditer(text):
        name, kind = m.group(1), m.group(2)
        if kind == "begin":
            if open_name is not None:
                raise ValueError(f"section {name!r} begins inside section {open_name!r}")
            if name in out:
                raise ValueError(f"section {name!r} appears twice")
            open_name, start = name, m.end()
        else:
            if open_name != name:
                raise ValueError(f"end marker of {name!r} without its begin marker")
            out[name] = text[start : m.start()].strip("\n")
            open_name = None
    if open_name is not None:
        raise ValueError(f"section {open_name!r} has no end marker")
    return out


def write_section(md: Path, name: str, text: str, record: dict[str, Any]) -> None:
    """Put ``text`` between ``name``'s markers in ``md`` (appended with its markers when the section is new;
    nothing outside the markers changes) and ``record`` (what ``text`` was rendered from) in
    `record_path`.  Both writes are atomic (temp file + rename)."""
    md = Path(md)
    cur = md.read_text() if md.exists() else "# Benchmark results\n"
    begin, end = markers(name)
    block = f"{begin}\n{text}\n{end}"
    if name in sections(cur):
        new = cur[: cur.index(begin)] + block + cur[cur.index(end) + len(end) :]
    else:
        new = cur.rstrip("\n") + "\n\n" + block + "\n"
    rec = record_path(md, name)
    rec.parent.mkdir(parents=True, exist_ok=True)
    for path, content in ((rec, json.dumps(record, indent=1, sort_keys=True) + "\n"), (md, new)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(content)
        tmp.replace(path)


def publish(name: str, text: str, record: dict[str, Any], *, json_path: Path | None, md: Path | None) -> None:
    """A benchmark's ending: print ``text``, write ``record`` to ``json_path`` and the section ``name`` into
    ``md`` (`write_section`), each only when given."""
    print(text)
    if json_path:
        Path(json_path).write_text(json.dumps(record, indent=1))
    if md:
        write_section(md, name, text, record)


def read_record(md: Path, name: str) -> dict[str, Any]:
    return json.loads(record_path(md, name).read_text())
