"""The imatrix collector killed with SIGKILL at 24 points (every partial save's write and rename, byte
offsets inside the saves, times): the output name holds nothing or the file of an uninterrupted run, a
partial file is whole and readable, and `resume=True` then writes the same bytes (the partial file carries
the float64 running sums) and removes the partial file and any temp file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from dsv4_gguf.quantize.imatrix import load_imatrix_raw
from dsv4_gguf.quantize.imatrix_collect import FINGERPRINT_KEY, collect, load_partial
from hardening import killharness as kh

pytestmark = pytest.mark.slow  # ~80 s on 2 shared cores (a child process per kill)

N_EVENT, N_BYTES, N_TIME = 12, 8, 4
N_CHUNKS = 6


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _args(setup: dict, out: Path) -> dict:
    return {
        "model": str(setup["model"]),
        "out": str(out / "x.imatrix"),
        "tokens": str(setup["tokens"]),
        "ctx": 32,
        "threads": 1,
        "save_every": 1,
    }


@pytest.fixture(scope="module")
def setup(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from dsv4_gguf.cli import main

    d = tmp_path_factory.mktemp("kill-imatrix")
    model = d / "tiny-SOURCE.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(model), "--type", "SOURCE", "--no-mtp", "--name", "tiny"]) == 0
    rng = np.random.default_rng(0)
    tokens = d / "tokens.npy"
    np.save(
        tokens, np.concatenate([np.zeros((N_CHUNKS, 1)), rng.integers(10, 1000, (N_CHUNKS, 31))], 1).astype(np.int32)
    )
    s = {"model": model, "tokens": tokens}
    root = d / "ref"
    (root / "out").mkdir(parents=True)
    r = kh.reference("imatrix", _args(s, root / "out"), root)
    assert sorted(p.name for p in (root / "out").iterdir()) == ["x.imatrix"]
    s.update(digest=_digest(root / "out" / "x.imatrix"), points=kh.points(r, N_EVENT, N_BYTES, N_TIME, seed=3))
    return s


def _state(out: Path, setup: dict) -> str:
    final, partial = out / "x.imatrix", out / "x.imatrix.partial"
    for p in out.iterdir():
        assert p.name in ("x.imatrix", "x.imatrix.partial", "x.imatrix.tmp", "x.imatrix.partial.tmp"), p.name
    state = []
    if partial.exists():
        raw = load_partial(partial)
        assert 1 <= raw.chunk_count < N_CHUNKS and FINGERPRINT_KEY in raw.extra
        state.append(f"partial({raw.chunk_count})")
    if final.exists():
        load_imatrix_raw(final)
        assert _digest(final) == setup["digest"], "the file at the output name differs from a whole run"
        state.append("final")
    return "+".join(state) or "nothing"


@pytest.mark.parametrize("i", range(N_EVENT + N_BYTES + N_TIME))
def test_kill_then_resume(i: int, setup: dict, tmp_path: Path) -> None:
    kind, at = setup["points"][i]
    out = tmp_path / "out"
    out.mkdir()
    args = _args(setup, out)
    res = kh.run("imatrix", args, tmp_path, kind=kind, at=at)
    assert res.killed or kind == "time", f"{kind} {at}: the run ended before the kill point"
    state = _state(out, setup)
    kh.record("imatrix", res, state)
    chunks = list(np.load(args.pop("tokens")))
    collect(args.pop("model"), None, args.pop("out"), token_chunks=chunks, resume=True, **args)
    assert [p.name for p in out.iterdir()] == ["x.imatrix"]
    assert _digest(out / "x.imatrix") == setup["digest"]
