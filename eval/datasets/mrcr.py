"""OpenAI MRCR from a local copy: the current `{2,4,8}needle/{N}needle_{0,1}.parquet` tree (Dec 2025
fix) or the old single files `{N}needle.parquet` (pre-fix data, reported as such), or one parquet file.

Rows are streamed in small batches (shards reach 460 MB, single prompts 5 M chars). Each row is binned by
o200k tokens of its messages' contents plus the answer (the official bins), and the prompt is rendered with
our DSV4 chat encoding after merging consecutive same-role turns with a newline (some rows open with two
user turns; DSV4's encoder would otherwise emit two User markers). No hub access, ever.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...chat import encode_messages
from ..metrics.mrcr import BIN_LABELS, bin_index

__all__ = ["MrcrRow", "MrcrSource", "discover", "merge_same_role", "load_mrcr", "parse_bins"]

COLUMNS = (
    "prompt",
    "answer",
    "random_string_to_prepend",
    "n_needles",
    "desired_msg_index",
    "total_messages",
    "n_chars",
)


@dataclass
class MrcrRow:
    uid: str  # "<file stem>:<row>"; stable across runs, the resume key
    messages: list[dict[str, str]]
    answer: str
    prefix: str
    n_needles: int
    n_chars: int
    o200k_tokens: int
    bin: int | None
    date_added: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self, thinking_mode: str = "chat") -> str:
        return encode_messages(merge_same_role(self.messages), thinking_mode=thinking_mode)


@dataclass
class MrcrSource:
    layout: str  # "tree" (post-fix), "legacy" (pre-fix single files) or "file"
    files: list[Path]


def merge_same_role(messages: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for m in messages:
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n" + m["content"]}
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def discover(path: str | Path, needles: Sequence[int] = (2, 4, 8)) -> MrcrSource:
    root = Path(path)
    if root.is_file():
        return MrcrSource("file", [root])
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no MRCR data there; download openai/mrcr (the {{2,4,8}}needle/ "
            "folders) on a machine with hub access and pass the local folder"
        )
    tree = [p for n in needles for p in sorted((root / f"{n}needle").glob(f"{n}needle_*.parquet"))]
    if tree:
        return MrcrSource("tree", tree)
    legacy = [root / f"{n}needle.parquet" for n in needles if (root / f"{n}needle.parquet").is_file()]
    if legacy:
        return MrcrSource("legacy", legacy)
    raise FileNotFoundError(
        f"{root}: expected {{2,4,8}}needle/{{N}}needle_{{0,1}}.parquet (current layout) or "
        "{N}needle.parquet (old layout); found neither"
    )


def parse_bins(spec: str | None) -> set[int] | None:
    """'8K,128K' or '0,4' or '8K-128K' -> bin indices; None = all bins."""
    if not spec:
        return None
    out: set[int] = set()

    def one(tok: str) -> int:
        tok = tok.strip().upper()
        if tok in BIN_LABELS:
            return BIN_LABELS.index(tok)
        if re.fullmatch(r"\d", tok) and int(tok) < len(BIN_LABELS):
            return int(tok)
        raise ValueError(f"unknown MRCR bin {tok!r}; use one of {', '.join(BIN_LABELS)} or 0-7")

    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        a = one(lo)
        out.update(range(a, one(hi) + 1) if hi else [a])
    return out


def _rows(files: list[Path], batch_size: int = 8) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    for f in files:
        pf = pq.ParquetFile(f)
        missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
        if missing:
            raise ValueError(f"{f}: not an MRCR parquet file, columns {missing} are missing")
        i = 0
        for batch in pf.iter_batches(batch_size=batch_size):
            for row in batch.to_pylist():
                yield f, i, row
                i += 1


def load_mrcr(
    path: str | Path,
    needles: Sequence[int] = (2, 4, 8),
    bins: set[int] | None = None,
    per_cell: int | None = None,
    seed: int = 0,
    max_tokens: int | None = None,
    count: Callable[[str], int] | None = None,
) -> tuple[MrcrSource, list[MrcrRow]]:
    """Rows passing the needle, bin and `max_tokens` (o200k prompt+answer) filters, in file order;
    `per_cell` keeps a seeded sample of at most that many rows per (needles, bin). `count` is the o200k
    counter (injectable for tests)."""
    if count is None:
        from ..tokenize import count_o200k as count
    src = discover(path, needles)
    rows: list[MrcrRow] = []
    for f, i, r in _rows(src.files):
        n = int(r["n_needles"])
        if n not in needles:
            continue
        messages = json.loads(r["prompt"])
        n_tok = sum(count(m["content"]) for m in messages) + count(r["answer"])
        b = bin_index(n_tok)
        if b is None or (bins is not None and b not in bins) or (max_tokens is not None and n_tok > max_tokens):
            continue
        extra = {k: r[k] for k in ("desired_msg_index", "total_messages") if k in r}
        rows.append(
            MrcrRow(
                f"{f.parent.name + '/' if src.layout == 'tree' else ''}{f.stem}:{i}",
                messages,
                r["answer"],
                r["random_string_to_prepend"],
                n,
                int(r["n_chars"]),
                n_tok,
                b,
                str(r["date_added"]) if r.get("date_added") is not None else None,
                extra,
            )
        )
    if per_cell is not None:
        groups: dict[tuple[int, int | None], list[MrcrRow]] = defaultdict(list)
        for row in rows:
            groups[(row.n_needles, row.bin)].append(row)
        keep = set()
        for key in sorted(groups, key=str):
            g = groups[key]
            keep.update(r.uid for r in random.Random(f"{seed}:{key}").sample(g, min(per_cell, len(g))))
        rows = [r for r in rows if r.uid in keep]
    return src, rows
