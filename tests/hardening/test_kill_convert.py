"""`dsv4-gguf convert` killed with SIGKILL at 24 points (every step of the commit protocol, byte offsets,
times) and a resumed run killed at 6 more: the final names hold nothing or files equal to an uninterrupted
run's (the main file only once the MTP sidecar is there), and `--resume` then writes the same bytes, leaving
no partial or journal behind."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from hardening import killharness as kh

from dsv4_gguf.cli import main
from dsv4_gguf.gguf_io import GGUFFile

pytestmark = pytest.mark.slow  # ~80-100 s on 2 shared cores (a child process per kill)

N_EVENT, N_BYTES, N_TIME = 16, 4, 4  # every one of the 16 mutations of a run
NAMES = ("t.gguf", "mtp-t.gguf")


def _args(ckpt: Path, out: Path) -> list[str]:
    # The block tensors only: the two vocabulary matrices (4 x 66 MB of the 280 MB) are single writes that
    # add time, not steps; with them gone the byte kills land across ~190 tensors of both files.
    return ["convert", str(ckpt), "-o", str(out / "t.gguf"), "--type", "SOURCE", "--name", "tiny", "--only", r"^blk\."]


def _digest(p: Path) -> str:
    with open(p, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


@pytest.fixture(scope="module")
def ref(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("kill-convert-ref")
    (root / "out").mkdir()
    r = kh.reference("cli", _args(tiny_ckpt, root / "out"), root)
    assert sorted(p.name for p in (root / "out").iterdir()) == sorted(NAMES)
    assert len(r.events) == N_EVENT, [e[:2] for e in r.events]  # a new step: give it its kill point
    pts = kh.points(r, N_EVENT, N_BYTES, N_TIME, seed=11)
    return {"digests": {n: _digest(root / "out" / n) for n in NAMES}, "points": pts, "ref": r}


def _state(out: Path, ref: dict) -> str:
    """Checks what a kill left; returns which final files exist."""
    present = []
    for p in out.iterdir():
        assert p.name in NAMES or p.name.endswith((".partial", ".journal", ".journal.tmp")), f"unexpected {p.name}"
        if p.name in NAMES:
            GGUFFile(p)  # parses: header, every tensor inside the file
            assert _digest(p) == ref["digests"][p.name], f"{p.name} at its final name differs from a whole run"
            present.append(p.name)
    if "t.gguf" in present:
        assert "mtp-t.gguf" in present, "the main file appeared before the MTP sidecar"
    return "+".join(sorted(present)) or "nothing"


@pytest.mark.parametrize("i", range(N_EVENT + N_BYTES + N_TIME))
def test_kill_then_resume(i: int, ref: dict, tiny_ckpt: Path, tmp_path: Path) -> None:
    kind, at = ref["points"][i]
    out = tmp_path / "out"
    out.mkdir()
    res = kh.run("cli", _args(tiny_ckpt, out), tmp_path, kind=kind, at=at)
    assert res.killed or kind == "time", f"{kind} {at}: the run ended before the kill point"
    state = _state(out, ref)
    kh.record("convert", res, state)
    assert main([*_args(tiny_ckpt, out), "--resume"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)  # no partial or journal left
    assert {n: _digest(out / n) for n in NAMES} == ref["digests"]


@pytest.fixture(scope="module")
def killed_once(ref: dict, tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of a run killed 30% of the way through its bytes (inside the main file)."""
    root = tmp_path_factory.mktemp("kill-convert-once")
    (root / "out").mkdir()
    assert kh.run("cli", _args(tiny_ckpt, root / "out"), root, kind="bytes", at=ref["ref"].total_bytes * 0.3).killed
    assert _state(root / "out", ref) == "nothing"
    return root / "out"


# Mutations of that resume: 3 reopen the partial (truncate), 4-5 journal rewrite (temp + rename), 6-7 reopen
# partial and journal, 8 start the MTP file, 12-13 the renames (14-17, the clean-up, as in a fresh run).
@pytest.mark.parametrize("k", [3, 5, 6, 8, 12, 13])
def test_kill_during_resume(k: int, ref: dict, killed_once: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    """`--resume` of a killed run, itself killed before its k-th mutation: a third run still ends with the
    same bytes."""
    out = tmp_path / "out"
    shutil.copytree(killed_once, out)
    res = kh.run("cli", [*_args(tiny_ckpt, out), "--resume"], tmp_path, kind="event", at=k)
    assert res.killed, f"the resumed run made fewer than {k} mutations"
    kh.record("convert-resume", res, _state(out, ref))
    assert main([*_args(tiny_ckpt, out), "--resume"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)
    assert {n: _digest(out / n) for n in NAMES} == ref["digests"]
