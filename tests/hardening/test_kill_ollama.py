"""`dsv4-gguf ollama` (store install) killed with SIGKILL at 24 points (and a rerun at 3 more) into a store
that already holds another model: that model's files stay untouched, the new manifest is absent or names
only present blobs whose sha256 is their name, no blob at a final name is half written, and re-running the
command leaves exactly the store (and Modelfile) of an uninterrupted run: no temp file of a killed run
survives."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hardening import killharness as kh

from dsv4_gguf import ollama
from dsv4_gguf.cli import main

N_EVENT, N_BYTES, N_TIME = 12, 8, 4
MANIFEST = Path("manifests/registry.ollama.ai/library/dsv4/q")


def _gguf(path: Path, seed: int, n: int) -> Path:
    """A deepseek4 GGUF with ``n`` float32 weights (24 MB for the model: two 16 MiB copy chunks)."""
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)
    w = GGUFWriter(path, "deepseek4")
    w.add_uint32("deepseek4.context_length", 4096)
    w.add_uint32("general.file_type", 0)
    w.add_tensor("token_embd.weight", rng.standard_normal((n // 256, 256), dtype=np.float32))
    w.add_tensor("blk.0.attn_norm.weight", rng.standard_normal(256, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _args(gguf: Path, store: Path, modelfile: Path) -> list[str]:
    return ["ollama", str(gguf), "--name", "dsv4:q", "--models-dir", str(store), "--modelfile", str(modelfile)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("kill-ollama")
    gguf = _gguf(d / "model.gguf", 1, 6 << 20)
    base = d / "base-store"  # the store as the user had it: another model (shares template/license blobs)
    ollama.install(_gguf(d / "other.gguf", 2, 1 << 16), "other:v1", models_dir=base, num_ctx=4096)
    root = d / "ref"
    root.mkdir()
    shutil.copytree(base, root / "store")
    r = kh.reference("cli", _args(gguf, root / "store", root / "Modelfile"), root)
    return {
        "gguf": gguf,
        "base": base,
        "before": _snapshot(base),
        "after": _snapshot(root / "store"),
        "modelfile": (root / "Modelfile").read_text(),
        "points": kh.points(r, N_EVENT, N_BYTES, N_TIME, seed=7),
    }


def _state(store: Path, s: dict) -> str:
    now = _snapshot(store)
    for rel, digest in s["before"].items():
        assert now.get(rel) == digest, f"pre-existing {rel} was changed or removed"
    for rel in now:
        name = Path(rel).name
        if rel.startswith("blobs/sha256-"):
            assert now[rel] == name.removeprefix("sha256-"), f"{rel}: content does not match its name"
        else:
            assert rel in s["before"] or rel == str(MANIFEST) or name.startswith(".dsv4-tmp-"), f"stray file {rel}"
    mp = store / MANIFEST
    if not mp.exists():
        return "no manifest"
    manifest = json.loads(mp.read_text())
    for layer in (manifest["config"], *manifest["layers"]):
        rel = "blobs/" + layer["digest"].replace(":", "-")
        assert rel in now and (store / rel).stat().st_size == layer["size"], f"manifest names missing {rel}"
    assert now[str(MANIFEST)] == s["after"][str(MANIFEST)]
    return "manifest"


@pytest.mark.parametrize("i", range(N_EVENT + N_BYTES + N_TIME))
def test_kill_then_rerun(i: int, setup: dict, tmp_path: Path) -> None:
    kind, at = setup["points"][i]
    store, modelfile = tmp_path / "store", tmp_path / "Modelfile"
    shutil.copytree(setup["base"], store)
    res = kh.run("cli", _args(setup["gguf"], store, modelfile), tmp_path, kind=kind, at=at)
    assert res.killed or kind == "time", f"{kind} {at}: the run ended before the kill point"
    state = _state(store, setup)
    if modelfile.exists():
        assert modelfile.read_text() == setup["modelfile"]
    kh.record("ollama", res, state)
    again = _args(setup["gguf"], store, modelfile) + (["--force"] if state == "manifest" else [])
    assert main(again) == 0
    assert _snapshot(store) == setup["after"]
    assert modelfile.read_text() == setup["modelfile"]


# Mutations of a rerun after a kill inside the model copy: 4 removes the killed run's temp file, 5 opens the
# new model temp file, 7 renames it into place.
@pytest.mark.parametrize("k", [4, 5, 7])
def test_kill_during_rerun(k: int, setup: dict, tmp_path: Path) -> None:
    """A run killed inside the model copy (a temp file left), rerun and killed again before the rerun's k-th
    mutation: a third run still leaves exactly an uninterrupted run's store."""
    store, modelfile = tmp_path / "store", tmp_path / "Modelfile"
    shutil.copytree(setup["base"], store)
    args = _args(setup["gguf"], store, modelfile)
    assert kh.run("cli", args, tmp_path, kind="bytes", at=20 << 20).killed
    assert any(p.name.startswith(".dsv4-tmp-") for p in (store / "blobs").iterdir())
    res = kh.run("cli", args, tmp_path, kind="event", at=k)
    assert res.killed
    kh.record("ollama-rerun", res, _state(store, setup))
    assert main(args) == 0
    assert _snapshot(store) == setup["after"]
