#!/usr/bin/env python3
"""Rebuild quantize/calibration/calibration.txt from conversations.jsonl (the imatrix calibration corpus).

Each conversation is rendered with the DeepSeek-V4 chat encoding twice: non-think ("chat") and think
("thinking", its reasoning kept).  No BOS: `dsv4-gguf imatrix` starts every chunk with one.  The output
is deterministic; ``--check`` exits 1 when the committed file differs from a fresh build.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dsv4_gguf.chat import encode_messages

ROOT = Path(__file__).resolve().parents[1] / "quantize" / "calibration"
LIMIT = 200_000  # bytes; keep the shipped corpus small


def render(conversations: list[dict]) -> str:
    parts = []
    for mode in ("chat", "thinking"):
        for c in conversations:
            msgs = c["messages"]
            if mode == "chat":  # non-think: no reasoning in the rendered answer
                msgs = [{k: v for k, v in m.items() if k != "reasoning_content"} for m in msgs]
            parts.append(encode_messages(msgs, thinking_mode=mode, add_default_bos_token=False, drop_thinking=True))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT / "conversations.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "calibration.txt")
    ap.add_argument("--check", action="store_true", help="compare with the existing file instead of writing")
    ns = ap.parse_args(argv)
    convs = [json.loads(line) for line in ns.src.read_text(encoding="utf-8").splitlines() if line.strip()]
    text = render(convs)
    size = len(text.encode("utf-8"))
    if size > LIMIT:
        print(f"{ns.out}: {size} bytes exceeds the {LIMIT}-byte limit; shorten conversations.jsonl", file=sys.stderr)
        return 1
    if ns.check:
        same = ns.out.is_file() and ns.out.read_text(encoding="utf-8") == text
        print(f"{ns.out}: {'up to date' if same else 'stale; run scripts/build_calibration.py'}")
        return 0 if same else 1
    tmp = ns.out.with_name(ns.out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(ns.out)
    print(f"wrote {ns.out}: {len(convs)} conversations x 2 think modes, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
