"""SWE-bench from local files: full / Verified / Lite (and their oracle `text` variants) and SWE-bench Pro,
as .json (list), .jsonl or .parquet, the formats the official `load_swebench_dataset` accepts.

Pro's lower-case field names (`fail_to_pass`, ...) are normalised to the official upper-case ones and
JSON-string lists are decoded. Subsets: explicit instance ids, repositories, and `limit` rows drawn by a
seeded sample stratified by repository (largest-remainder allocation), so a subset can be regraded by
the official harness from the ids file the run writes. Prompts: the dataset's oracle `text` when present,
else the issue text (plus hints), asking for a unified diff; rendered with our DSV4 chat encoding.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...chat import encode_messages

__all__ = ["SweInstance", "load_swebench", "select", "build_prompt"]

_ALIASES = {"fail_to_pass": "FAIL_TO_PASS", "pass_to_pass": "PASS_TO_PASS"}
INSTRUCTION = (
    "You will be given a GitHub issue from the repository {repo}. Write a patch that resolves it, "
    "as a unified diff (`diff --git a/... b/...`) that applies with `git apply`.\n\n"
    "<issue>\n{problem}\n</issue>\n"
)


@dataclass
class SweInstance:
    instance_id: str
    repo: str
    patch: str
    problem_statement: str
    text: str | None  # oracle / retrieval prompt, when the dataset carries one
    hints_text: str
    fields: dict[str, Any]


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    return list(data.values()) if isinstance(data, dict) else list(data)


def load_swebench(path: str | Path) -> list[SweInstance]:
    p = Path(path)
    if p.is_dir():  # the official loader's `{split}.parquet` folder form
        cands = sorted(p.glob("*.parquet")) + sorted(p.glob("*.jsonl")) + sorted(p.glob("*.json"))
        if not cands:
            raise FileNotFoundError(f"{p}: no .parquet/.jsonl/.json SWE-bench file in this folder")
        p = cands[0]
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such SWE-bench file (.json, .jsonl or .parquet)")
    out = []
    for i, raw in enumerate(_read(p)):
        row = {_ALIASES.get(k, k): v for k, v in raw.items()}
        for k in ("FAIL_TO_PASS", "PASS_TO_PASS"):
            if isinstance(row.get(k), str):
                row[k] = json.loads(row[k]) if row[k].strip() else []
        missing = [k for k in ("instance_id", "repo", "patch") if not row.get(k)]
        if missing:
            raise ValueError(f"{p}: row {i} lacks {missing}; is this a SWE-bench file?")
        out.append(
            SweInstance(
                str(row["instance_id"]),
                str(row["repo"]),
                str(row["patch"]),
                str(row.get("problem_statement") or ""),
                row.get("text") or None,
                str(row.get("hints_text") or ""),
                row,
            )
        )
    return out


def select(
    rows: Sequence[SweInstance],
    ids: Sequence[str] | None = None,
    repos: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[SweInstance]:
    """Filter by ids and repos, then a seeded repo-stratified sample of `limit` rows (dataset order kept)."""
    if ids:
        known = {r.instance_id for r in rows}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ValueError(f"instance ids not in the dataset: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
        wanted = set(ids)
        rows = [r for r in rows if r.instance_id in wanted]
    if repos:
        rows = [r for r in rows if r.repo in set(repos)]
    if limit is None or limit >= len(rows):
        return list(rows)
    by_repo: dict[str, list[SweInstance]] = defaultdict(list)
    for r in rows:
        by_repo[r.repo].append(r)
    quota = {k: limit * len(v) / len(rows) for k, v in by_repo.items()}
    take = {k: int(q) for k, q in quota.items()}
    for k in sorted(quota, key=lambda k: (-(quota[k] - take[k]), k))[: limit - sum(take.values())]:
        take[k] += 1
    rng = random.Random(seed)
    keep = set()
    for k in sorted(by_repo):
        keep.update(r.instance_id for r in rng.sample(by_repo[k], take[k]))
    return [r for r in rows if r.instance_id in keep]


def build_prompt(inst: SweInstance, thinking_mode: str = "chat") -> str:
    content = inst.text or INSTRUCTION.format(repo=inst.repo, problem=inst.problem_statement.strip())
    if not inst.text:
        # SWE-bench Pro ships the requirements and the interface the fix must provide next to the issue
        for key in ("requirements", "interface"):
            if str(inst.fields.get(key) or "").strip():
                content += f"\n<{key}>\n{str(inst.fields[key]).strip()}\n</{key}>\n"
        if inst.hints_text.strip():
            content += f"\n<hints>\n{inst.hints_text.strip()}\n</hints>\n"
    return encode_messages([{"role": "user", "content": content}], thinking_mode=thinking_mode)
