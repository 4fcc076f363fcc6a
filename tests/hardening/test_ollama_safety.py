"""Ollama store safety beyond tests/ollama: hostile names (unicode look-alikes of '/' and '.', control
characters, absolute and drive paths, huge names) are refused with the name and the rule and touch nothing;
a linked model folder cannot lead the manifest out of the store; blobs are verified (a damaged stored blob,
a copy corrupted on its way to disk); and a failed export (disk full or I/O error mid-copy, Ctrl-C, a failed
rename) leaves the store exactly as it was: no manifest, no blob, no folder, no temp file."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from dsv4_gguf import ollama
from dsv4_gguf.cli import main
from dsv4_gguf.ollama import OllamaExportError
from dsv4_gguf.ollama import store as ollama_store

RULE = "[A-Za-z0-9_.-]"


def _gguf(path: Path, seed: int = 1, n: int = 1 << 16) -> Path:
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)
    w = GGUFWriter(path, "deepseek4")
    w.add_uint32("deepseek4.context_length", 4096)
    w.add_uint32("general.file_type", 0)
    w.add_tensor("token_embd.weight", rng.standard_normal((n // 256, 256), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _tree(root: Path) -> dict[str, str]:
    """Every file (with its sha256) and folder under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store that already holds another model."""
    s = tmp_path / "models"
    ollama.install(_gguf(tmp_path / "other.gguf", seed=2), "other:v1", models_dir=s, num_ctx=4096)
    return s


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return _gguf(tmp_path / "model.gguf", n=3 << 20)  # 12 MB: one 16 MiB copy chunk


# ---------------------------------------------------------------------------------------------------
# names

HOSTILE = {
    "fullwidth solidus": ("a\uff0fb", "U+FF0F FULLWIDTH SOLIDUS"),
    "fullwidth reverse solidus": ("a\uff3cb", "U+FF3C FULLWIDTH REVERSE SOLIDUS"),
    "division slash": ("a\u2215b", "U+2215 DIVISION SLASH"),
    "fraction slash": ("a\u2044b", "U+2044 FRACTION SLASH"),
    "fullwidth dots": ("\uff0e\uff0e", "U+FF0E FULLWIDTH FULL STOP"),
    "one dot leaders in the tag": ("m:\u2024\u2024", "U+2024 ONE DOT LEADER"),
    "two dot leader": ("\u2025", "U+2025 TWO DOT LEADER"),
    "cyrillic a": ("\u0430pple", "U+0430 CYRILLIC SMALL LETTER A"),
    "zero width space": ("a\u200bb", "U+200B ZERO WIDTH SPACE"),
    "right-to-left override": ("a\u202eb", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    "NUL": ("a\x00b", "control character '\\x00'"),
    "newline": ("a\nb", "control character '\\n'"),
    "NUL in the tag": ("m:t\x00", "control character '\\x00'"),
    "absolute path": ("/etc/passwd", "path separator '/'"),
    "drive path": ("C:\\Windows", "path separator '\\\\'"),
    "dot-dot tag": ("m:..", "contains '..'"),
    "81-character tag": ("m:" + "t" * 81, "81 characters long"),
    "10k-character name": ("n" * 10_000, "10000 characters long"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_names_are_refused_with_the_rule(case: str, model: Path, tmp_path: Path) -> None:
    name, why = HOSTILE[case]
    models = tmp_path / "models"
    with pytest.raises(OllamaExportError) as err:
        ollama.install(model, name, models_dir=models)
    msg = str(err.value)
    assert why in msg and RULE in msg
    shown = repr(name) if len(name) <= 100 else repr(name[:60])
    assert shown in msg, msg[:300]
    assert len(msg) < 1000  # a huge name is shown shortened
    assert not models.exists()


def test_cli_names_the_bad_name(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    assert (
        main(
            [
                "ollama",
                str(model),
                "--name",
                "x\uff0f..\uff0fy",
                "--models-dir",
                str(models),
                "--modelfile",
                str(tmp_path / "Modelfile"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "invalid model name 'x／..／y'" in err and "FULLWIDTH SOLIDUS" in err and RULE in err
    assert not models.exists() and not (tmp_path / "Modelfile").exists()


def test_every_allowed_character_stays_inside(model: Path, store: Path) -> None:
    r = ollama.install(model, "Az09_.-x:T.9_-", models_dir=store)
    assert r.manifest == store / "manifests/registry.ollama.ai/library/Az09_.-x/T.9_-"
    assert r.manifest.resolve().is_relative_to(store.resolve())


def test_linked_model_folder_cannot_lead_out(model: Path, store: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store / "manifests/registry.ollama.ai/library/evil").symlink_to(outside, target_is_directory=True)
    before = _tree(store)
    with pytest.raises(OllamaExportError, match=r"outside .*manifests.*Remove the link"):
        ollama.install(model, "evil:latest", models_dir=store)
    assert list(outside.iterdir()) == []
    assert _tree(store) == before


# ---------------------------------------------------------------------------------------------------
# blob verification


def test_damaged_stored_blob_is_not_reused(model: Path, store: Path) -> None:
    """A blob already in the store with the right size but other bytes: refused, named, left alone."""
    first = ollama.install(model, "a", models_dir=store)
    template = store / "blobs" / first.manifest_data["layers"][1]["digest"].replace(":", "-")
    data = bytearray(template.read_bytes())
    data[0] ^= 0x01
    template.write_bytes(bytes(data))
    before = _tree(store)
    with pytest.raises(OllamaExportError, match=rf"{template.name}: stored blob .* the store is damaged"):
        ollama.install(model, "b", models_dir=store)
    assert _tree(store) == before


def test_copy_corrupted_on_its_way_to_disk_is_caught(model: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes on disk differ from the bytes hashed (a flipped byte before fsync): the read-back check
    refuses the blob before it gets a final name."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.fstat(fd).st_size > 1 << 20:  # the model blob
            b = os.pread(fd, 1, 4096)
            os.pwrite(fd, bytes([b[0] ^ 0x80]), 4096)
        real_fsync(fd)

    before = _tree(store)
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OllamaExportError, match="corrupted on its way to disk.*No manifest was written"):
        ollama.install(model, "m", models_dir=store)
    assert _tree(store) == before


# ---------------------------------------------------------------------------------------------------
# failures change nothing


class _FailingFile:
    def __init__(self, f, fail) -> None:  # noqa: ANN001
        self._f, self._fail = f, fail

    def write(self, b) -> int:  # noqa: ANN001
        self._fail()
        return self._f.write(b)

    def __enter__(self):  # noqa: ANN204
        return self

    def __exit__(self, *a) -> None:  # noqa: ANN002
        self._f.close()

    def __getattr__(self, k: str):  # noqa: ANN204
        return getattr(self._f, k)


def _raise(exc: BaseException, after: int = 0):  # noqa: ANN202
    calls = []

    def fail() -> None:
        calls.append(1)
        if len(calls) > after:
            raise exc

    return fail


FAILURES = {
    # case: (where, the error, how many calls pass first); "chunks" fails between the two halves of the
    # model file's first 16 MiB chunk, "write" on the n-th blob write, "replace-*" on a rename
    "disk full mid-copy": ("chunks", OSError(errno.ENOSPC, "No space left on device"), 0),
    "I/O error writing the model blob": ("write", OSError(errno.EIO, "Input/output error"), 0),
    "Ctrl-C mid-copy": ("chunks", KeyboardInterrupt(), 0),
    "quota exceeded writing the config blob": ("write", OSError(errno.EDQUOT, "Disk quota exceeded"), 4),
    "blob rename refused": ("replace-blob", OSError(errno.EACCES, "Permission denied"), 1),
    "manifest rename fails": ("replace-manifest", OSError(errno.EIO, "Input/output error"), 0),
}


@pytest.mark.parametrize("case", FAILURES)
def test_failed_export_changes_nothing(case: str, model: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where, exc, after = FAILURES[case]
    fail = _raise(exc, after)
    if where == "chunks":
        real_chunks = ollama_store._file_chunks

        def chunks(path: Path, what: str = ""):  # noqa: ANN202
            for c in real_chunks(path, what):
                yield c[: len(c) // 2]
                fail()
                yield c[len(c) // 2 :]

        monkeypatch.setattr(ollama_store, "_file_chunks", chunks)
    elif where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FailingFile(real_fdopen(fd, *a, **k), fail))
    else:
        real_replace = os.replace

        def replace(src, dst) -> None:  # noqa: ANN001
            if ("manifests" in str(dst)) == (where == "replace-manifest"):
                fail()
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
    before = _tree(store)
    with pytest.raises((OllamaExportError, OSError, KeyboardInterrupt)) as err:
        ollama.install(model, "dsv4:q", models_dir=store)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        assert "disk full" in str(err.value) and "Nothing was installed" in str(err.value)
    assert _tree(store) == before
