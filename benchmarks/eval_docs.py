"""Regenerate the KLD table of docs/eval.md by running the commands the document quotes.

Takes the first ```bash block under "## Quick start on the tiny synthetic model" in docs/eval.md, runs it
verbatim with ``bash -euo pipefail`` in a fresh folder (the installed ``dsv4-gguf`` on PATH), then copies
the "## kld" table of the ``report.md`` that the block's last command wrote into docs/eval.md between the
``<!-- kld-table -->`` markers.  Without --write it only prints the table and says whether the document
matches it (exit 1 if it does not).

Usage: python benchmarks/eval_docs.py [--write] [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "eval.md"
BEGIN, END = "<!-- kld-table -->", "<!-- /kld-table -->"


def quick_start_block(text: str) -> str:
    sec = text.split("## Quick start on the tiny synthetic model", 1)
    if len(sec) != 2:
        sys.exit(f"{DOC}: no 'Quick start on the tiny synthetic model' section")
    m = re.search(r"```bash\n(.*?)```", sec[1], re.S)
    if not m:
        sys.exit(f"{DOC}: the quick start section has no ```bash block")
    return m.group(1)


def report_table(report_md: str) -> str:
    part = report_md.split("## kld", 1)
    if len(part) != 2:
        sys.exit("report.md has no kld section: the quoted commands did not produce a KLD report")
    table = []
    for ln in part[1].strip().splitlines():
        if not ln.startswith("|"):
            break
        table.append(ln)
    return "\n".join(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="replace the table in docs/eval.md")
    ap.add_argument("--keep", metavar="DIR", help="run in DIR (kept) instead of a temporary folder")
    ns = ap.parse_args()

    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        sys.exit(f"{DOC}: markers {BEGIN} / {END} around the KLD table are missing")
    block = quick_start_block(text)
    with tempfile.TemporaryDirectory(prefix="eval-docs-") as tmp:
        work = Path(ns.keep) if ns.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        print(f"running the quick start of {DOC.relative_to(ROOT)} in {work} ...", flush=True)
        subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, check=True)
        print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
        table = report_table((work / "runs" / "report" / "report.md").read_text(encoding="utf-8"))
    print(table)
    head, rest = text.split(BEGIN, 1)
    old, tail = rest.split(END, 1)
    if old.strip() == table.strip():
        print(f"{DOC.relative_to(ROOT)}: the table matches this run")
        return 0
    if not ns.write:
        print(f"{DOC.relative_to(ROOT)}: the table differs from this run (--write replaces it)")
        return 1
    DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")
    print(f"{DOC.relative_to(ROOT)}: table replaced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
