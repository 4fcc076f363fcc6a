"""The kill harness itself: its kills land where asked (before the n-th mutation, at the n-th byte) and the
kind of check the writer tests make catches a writer that writes its final name in place."""

from __future__ import annotations

from pathlib import Path

import pytest
from hardening import killharness as kh

BLOCKS = 16  # x 64 KiB


def _args(path: Path, atomic: bool) -> dict:
    return {"path": str(path), "atomic": atomic, "blocks": BLOCKS}


def _whole(p: Path) -> bool:
    data = p.read_bytes()
    return data == b"".join(bytes([i % 251]) * 65536 for i in range(BLOCKS))


def test_reference_sees_every_mutation_and_byte(tmp_path: Path) -> None:
    r = kh.reference("demo", _args(tmp_path / "f", True), tmp_path)
    assert [(k, Path(p).name) for k, p, _, _ in r.events] == [("open", "f.tmp"), ("os.rename", "f.tmp")]
    assert r.total_bytes == BLOCKS * 65536
    assert r.events[1][3] == BLOCKS * 65536  # all bytes were written before the rename


def test_event_kill_lands_before_the_mutation(tmp_path: Path) -> None:
    out = kh.run("demo", _args(tmp_path / "f", True), tmp_path, kind="event", at=2)
    assert out.killed
    assert not (tmp_path / "f").exists() and (tmp_path / "f.tmp").stat().st_size == BLOCKS * 65536


@pytest.mark.parametrize("at", [1, 65536, 5 * 65536 + 7, BLOCKS * 65536 - 1])
def test_byte_kill_lands_at_the_offset(at: int, tmp_path: Path) -> None:
    out = kh.run("demo", _args(tmp_path / "f", False), tmp_path, kind="bytes", at=at)
    assert out.killed
    assert (tmp_path / "f").stat().st_size == at  # the prefix was flushed, nothing after it


def test_checks_catch_an_in_place_writer(tmp_path: Path) -> None:
    """Byte kills over the run: the in-place writer leaves a torn file at its final name, the atomic one never."""
    torn = {True: 0, False: 0}
    for atomic in (True, False):
        ref = kh.reference("demo", _args(tmp_path / f"ref-{atomic}", atomic), tmp_path)
        for kind, at in kh.points(ref, 0, 5, 0, seed=1):
            final = tmp_path / f"f-{atomic}-{int(at)}"
            assert kh.run("demo", _args(final, atomic), tmp_path, kind=kind, at=at).killed
            torn[atomic] += final.exists() and not _whole(final)
    assert torn == {True: 0, False: 5}
