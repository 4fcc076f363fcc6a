"""`dsv4-gguf eval kld` killed with SIGKILL at 26 points (every manifest, reference, position and record
write, byte offsets (two inside a record line), times) and 4 more in a rerun after a torn record:
results.json is absent or equal to an uninterrupted run's, every stored file is whole (the records file
may end in a torn line, which the rerun cuts), and rerunning the command writes the same results.json and
records with no temp file left. The deterministic `fake` backend stands in for a model (the run-folder
writers are the same for every backend; tests/eval/test_resume_kill.py kills a runtime run)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hardening import killharness as kh

from dsv4_gguf.cli import main

N_EVENT, N_BYTES, N_TIME = 12, 8, 4
N_CHUNKS = 8


def _args(text: Path, run: Path) -> list[str]:
    return [
        "eval",
        "kld",
        "--data",
        str(text),
        "--model",
        "seed=0,noise=0.1,vocab=64",
        "--ref",
        "seed=0,vocab=64",
        "--backend",
        "fake",
        "--out",
        str(run),
        "--ctx",
        "32",
        "--chunks",
        str(N_CHUNKS),
        "--variant",
        "f",
    ]


def _arrays(p: Path) -> dict[str, np.ndarray]:
    with np.load(p) as z:
        return {k: z[k] for k in z.files}


def _same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("kill-eval")
    words = "the a tapir walks under tree at dawn and dusk river forest eats leaves".split()
    text = d / "t.txt"
    text.write_text(" ".join(random.Random(1).choice(words) for _ in range(200)), encoding="utf-8")
    root = d / "ref"
    root.mkdir()
    r = kh.reference("cli", _args(text, root / "run"), root)
    run = root / "run"
    files = {str(p.relative_to(run)): p for p in run.rglob("*") if p.is_file()}
    assert len([f for f in files if f.startswith("positions/")]) == N_CHUNKS
    # and two byte kills inside a record line (a torn last line for the rerun to cut): 40 bytes after the
    # records file is opened for the 1st and the 5th time
    opens = [b for kind, path, _, b in r.events if kind == "open" and path.endswith("items.jsonl")]
    assert len(opens) == N_CHUNKS
    torn = [("bytes", float(opens[0] + 40)), ("bytes", float(opens[4] + 40))]
    return {
        "text": text,
        "run": run,
        "files": files,
        "results": (run / "results.json").read_bytes(),
        "items": (run / "items.jsonl").read_bytes(),
        "manifest": json.loads((run / "manifest.json").read_text()),
        "points": kh.points(r, N_EVENT, N_BYTES, N_TIME, seed=5) + torn,
        "items_opens": opens,
    }


def _state(run: Path, s: dict) -> str:
    if not run.exists():
        return "nothing"
    ref_lines = s["items"].decode().splitlines()
    n_items = 0
    for p in sorted(run.rglob("*")):
        rel = str(p.relative_to(run))
        if p.is_dir() or ".tmp" in p.name:
            continue
        assert rel in s["files"], f"unexpected file {rel}"
        if rel == "results.json":
            assert p.read_bytes() == s["results"], "results.json differs from an uninterrupted run's"
        elif rel == "manifest.json":
            assert json.loads(p.read_text()) == s["manifest"]
        elif rel == "items.jsonl":
            data = p.read_bytes().decode()
            whole = data[: data.rfind("\n") + 1].splitlines()
            assert whole == ref_lines[: len(whole)], "a finished record differs"
            n_items = len(whole)
        elif p.suffix == ".npz":
            assert _same_arrays(_arrays(p), _arrays(s["files"][rel])), f"{rel} differs"
        elif p.suffix == ".npy":
            assert np.array_equal(np.load(p), np.load(s["files"][rel]))
        else:
            assert p.read_bytes() == s["files"][rel].read_bytes(), rel
    return "results" if (run / "results.json").exists() else f"{n_items} records"


@pytest.mark.parametrize("i", range(N_EVENT + N_BYTES + N_TIME + 2))
def test_kill_then_rerun(i: int, setup: dict, tmp_path: Path) -> None:
    kind, at = setup["points"][i]
    run = tmp_path / "run"
    res = kh.run("cli", _args(setup["text"], run), tmp_path, kind=kind, at=at)
    assert res.killed or kind == "time", f"{kind} {at}: the run ended before the kill point"
    state = _state(run, setup)
    kh.record("eval", res, state)
    if i >= N_EVENT + N_BYTES + N_TIME:
        assert not (run / "items.jsonl").read_bytes().endswith(b"\n"), "the kill did not tear a record"
    assert main(_args(setup["text"], run)) == 0
    assert (run / "results.json").read_bytes() == setup["results"]
    assert (run / "items.jsonl").read_bytes() == setup["items"]
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()) == sorted(setup["files"])


# Mutations of a rerun after a torn record: 3 cuts the torn line (truncate), 4 makes positions/, 5-6 the
# next chunk's positions (temp + rename), 7 its record.
@pytest.mark.parametrize("k", [3, 4, 6, 7])
def test_kill_during_rerun(k: int, setup: dict, tmp_path: Path) -> None:
    """A run killed inside its 3rd record, rerun and killed again before the rerun's k-th mutation: a third
    run still writes the same results and records."""
    run = tmp_path / "run"
    args = _args(setup["text"], run)
    assert kh.run("cli", args, tmp_path, kind="bytes", at=setup["items_opens"][2] + 40).killed
    assert not (run / "items.jsonl").read_bytes().endswith(b"\n")
    res = kh.run("cli", args, tmp_path, kind="event", at=k)
    assert res.killed
    kh.record("eval-rerun", res, _state(run, setup))
    assert main(args) == 0
    assert (run / "results.json").read_bytes() == setup["results"]
    assert (run / "items.jsonl").read_bytes() == setup["items"]
