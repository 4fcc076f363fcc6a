"""Fixtures the eval tests generate: an MRCR-shaped parquet tree (both layouts), a SWE-bench JSONL, a text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest


def _fake_o200k(text: str) -> int:
    """Stand-in token counter for loader tests: one token per character (edges are then exact)."""
    return len(text)


def mrcr_row(
    i: int, n_needles: int, total_chars: int, answer_body: str, prefix: str, response: str, two_user_turns: bool = True
) -> dict:
    """One MRCR-shaped row whose o200k count under `_fake_o200k` is exactly total_chars. The last user
    turn carries 'ANSWER:<response>' so the fake backend replies `response`."""
    answer = prefix + answer_body
    tail = f"Prepend {prefix} to the 2nd poem about tapirs. ANSWER:{response}"
    head = [{"role": "user", "content": "======EXAMPLE======"}] if two_user_turns else []
    fixed = sum(len(m["content"]) for m in head) + len(tail) + len(answer)
    filler = total_chars - fixed - len("poem about tapirs")
    assert filler > 0, (total_chars, fixed)
    msgs = head + [
        {"role": "user", "content": "poem about tapirs"},
        {"role": "assistant", "content": "x" * filler},
        {"role": "user", "content": tail},
    ]
    return {
        "prompt": json.dumps(msgs),
        "answer": answer,
        "random_string_to_prepend": prefix,
        "n_needles": n_needles,
        "desired_msg_index": 2,
        "total_messages": len(msgs),
        "n_chars": sum(len(m["content"]) for m in msgs),
        "date_added": "12/5/2025",
    }


def write_mrcr(root: Path, rows: dict[int, list[dict]], legacy: bool = False) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for n, rs in rows.items():
        if legacy:
            pq.write_table(
                pa.Table.from_pylist([{k: v for k, v in r.items() if k != "date_added"} for r in rs]),
                root / f"{n}needle.parquet",
            )
            continue
        (root / f"{n}needle").mkdir(parents=True, exist_ok=True)
        half = (len(rs) + 1) // 2
        for s, part in enumerate((rs[:half], rs[half:])):
            if part:
                pq.write_table(
                    pa.Table.from_pylist(part), root / f"{n}needle" / f"{n}needle_{s}.parquet", row_group_size=2
                )
    return root


@pytest.fixture
def mrcr_writer():
    return mrcr_row, write_mrcr


@pytest.fixture
def fake_o200k():
    return _fake_o200k


@pytest.fixture
def mrcr_tree(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    """Tree with rows in bins 8K and 16K for 2 and 8 needles; returns the path and each row's known score."""
    from difflib import SequenceMatcher

    rng = random.Random(0)
    rows: dict[int, list[dict]] = {2: [], 8: []}
    expected: dict[str, float] = {}
    body = "the tapir walks at dawn\n" * 3
    cases = [body, body.replace("dawn", "dusk", 1), "unrelated", None]
    for n in (2, 8):
        for j, total in enumerate((4096, 8192, 8193, 16384)):
            prefix = "".join(rng.choice("abcdefghijKLMNOP0123") for _ in range(10))
            resp = cases[j % 4]
            response = prefix + resp if resp is not None else body  # last case: prefix missing -> 0
            rows[n].append(mrcr_row(j, n, total, body, prefix, response))
    root = write_mrcr(tmp_path / "mrcr", rows)
    for n, rs in rows.items():
        half = (len(rs) + 1) // 2
        for j, r in enumerate(rs):
            stem, idx = (f"{n}needle/{n}needle_0", j) if j < half else (f"{n}needle/{n}needle_1", j - half)
            resp = json.loads(r["prompt"])[-1]["content"].split("ANSWER:", 1)[1]
            p = r["random_string_to_prepend"]
            expected[f"{stem}:{idx}"] = (
                SequenceMatcher(None, resp[len(p) :], r["answer"][len(p) :]).ratio() if resp.startswith(p) else 0.0
            )
    return root, expected


@pytest.fixture
def swe_jsonl(tmp_path: Path) -> Path:
    rows = []
    for i, repo in enumerate(["astropy/astropy"] * 4 + ["django/django"] * 6 + ["psf/requests"] * 2):
        rows.append(
            {
                "repo": repo,
                "instance_id": f"{repo.replace('/', '__')}-{100 + i}",
                "base_commit": "0" * 40,
                "patch": (
                    f"diff --git a/m{i}.py b/m{i}.py\n--- a/m{i}.py\n+++ b/m{i}.py\n@@ -1 +1 @@\n"
                    f"-x = {i}\n+x = {i + 1}\n"
                ),
                "test_patch": "",
                "problem_statement": f"x should be {i + 1} in m{i}.py",
                "hints_text": "",
                "created_at": "2020-01-01",
                "version": "1.0",
                "FAIL_TO_PASS": json.dumps([f"test_m{i}"]),
                "PASS_TO_PASS": "[]",
                "environment_setup_commit": "1" * 40,
            }
        )
    p = tmp_path / "swe.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    rng = random.Random(0)
    p = tmp_path / "text.txt"
    p.write_text(
        " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "x", "yz", "q"]) for _ in range(3000)), encoding="utf-8"
    )
    return p


class _TinyGGUFs(dict):
    """variant -> the tiny synthetic checkpoint converted by `dsv4-gguf convert --type VARIANT --no-mtp`,
    converted on first use and kept for the session (a test file pays only for the variants it uses)."""

    def __init__(self, ckpt: Path, out: Path) -> None:
        super().__init__()
        self.ckpt, self.out = ckpt, out

    def __missing__(self, variant: str) -> Path:
        from dsv4_gguf.cli import main

        path = self.out / f"tiny-{variant}.gguf"
        assert main(["convert", str(self.ckpt), "-o", str(path), "--type", variant, "--no-mtp"]) == 0
        self[variant] = path
        return path


@pytest.fixture(scope="session")
def tiny_ggufs(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _TinyGGUFs(tiny_ckpt, tmp_path_factory.mktemp("tiny-gguf"))
