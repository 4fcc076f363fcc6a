"""Must-show 3 (store): install into a temporary Ollama models dir, then check the manifest schema and media
types, that every digest and size matches its blob, the config blob, and the refusals and rollbacks."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat

import pytest

from dsv4_gguf import chat, ollama
from dsv4_gguf.ollama import OllamaExportError
from dsv4_gguf.ollama import store as ollama_store
from dsv4_gguf.templates import ollama_template

LAYER_TYPES = [
    "application/vnd.ollama.image.model",
    "application/vnd.ollama.image.template",
    "application/vnd.ollama.image.license",
    "application/vnd.ollama.image.params",
]


def _blob(models, digest):
    algo, hexdigest = digest.split(":")
    assert algo == "sha256" and len(hexdigest) == 64
    return (models / "blobs" / f"sha256-{hexdigest}").read_bytes()


def _check_store(models, manifest):
    """Every layer and the config: blob present, sha256 and size exact; no stray files in blobs/."""
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    entries = [manifest["config"], *manifest["layers"]]
    for entry in entries:
        assert set(entry) == {"mediaType", "digest", "size"}
        data = _blob(models, entry["digest"])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == entry["digest"]
        assert len(data) == entry["size"]
        mode = (models / "blobs" / entry["digest"].replace(":", "-")).stat().st_mode
        assert stat.S_IMODE(mode) == 0o644
    names = {p.name for p in (models / "blobs").iterdir()}
    assert names == {e["digest"].replace(":", "-") for e in entries}  # no temp files, nothing extra


def test_install_end_to_end(tmp_path, tiny_gguf):
    models = tmp_path / "models"
    result = ollama.install(tiny_gguf, "dsv4-tiny:q8", models_dir=models)
    path = models / "manifests" / "registry.ollama.ai" / "library" / "dsv4-tiny" / "q8"
    assert result.manifest == path
    manifest = json.loads(path.read_text())
    assert manifest == result.manifest_data
    _check_store(models, manifest)
    assert [layer["mediaType"] for layer in manifest["layers"]] == LAYER_TYPES

    model, template, license_, params = (_blob(models, layer["digest"]) for layer in manifest["layers"])
    assert model == tiny_gguf.read_bytes()
    assert template.decode() == ollama_template()
    assert license_.decode().startswith("MIT License")
    assert params.endswith(b"\n")
    assert json.loads(params) == {"temperature": 1.0, "top_p": 1.0, "stop": [chat.EOS], "num_ctx": 32768}

    config = json.loads(_blob(models, manifest["config"]["digest"]))
    assert config["model_format"] == "gguf"
    assert config["model_family"] == "deepseek4" and config["model_families"] == ["deepseek4"]
    assert config["file_type"] == "Q8_0"
    assert config["model_type"] == "1.6K"  # 1024 + 512 + 64 + 12 parameters
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"] for layer in manifest["layers"]]}

    text = result.modelfile
    assert text.startswith(f"FROM {tiny_gguf.resolve()}\n")
    assert f'TEMPLATE """{ollama_template()}"""' in text
    for line in (
        "PARAMETER temperature 1.0",
        "PARAMETER top_p 1.0",
        "PARAMETER num_ctx 32768",
        f'PARAMETER stop "{chat.EOS}"',
    ):
        assert line + "\n" in text
    assert 'LICENSE """MIT License' in text


def test_split_gguf_is_merged_into_one_model_blob(tmp_path, tiny_gguf, split_gguf):
    from gguf import GGUFReader

    models = tmp_path / "models"
    manifest = ollama.install(split_gguf[0], "dsv4-split", models_dir=models).manifest_data
    _check_store(models, manifest)
    assert (models / "manifests/registry.ollama.ai/library/dsv4-split/latest").is_file()
    merged = models / "blobs" / manifest["layers"][0]["digest"].replace(":", "-")
    reader = GGUFReader(merged)
    assert not [k for k in reader.fields if k.startswith("split.")]
    assert reader.fields["general.architecture"].contents() == "deepseek4"
    # Same tensors and bytes as the unsplit file written from the same seed.
    assert merged.read_bytes() == tiny_gguf.read_bytes()
    assert len(manifest["layers"]) == 4


def test_existing_tag_needs_force(tmp_path, tiny_gguf):
    models = tmp_path / "models"
    first = ollama.install(tiny_gguf, "m:v1", models_dir=models)
    with pytest.raises(OllamaExportError, match="already installed; pass --force"):
        ollama.install(tiny_gguf, "m:v1", models_dir=models)
    again = ollama.install(tiny_gguf, "m:v1", models_dir=models, force=True, num_ctx=4096)
    assert again.manifest == first.manifest
    params = json.loads(_blob(models, again.manifest_data["layers"][3]["digest"]))
    assert params["num_ctx"] == 4096
    assert json.loads(first.manifest.read_text()) == again.manifest_data


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/b", "a\\b", "x:../../t", "x:a/b", "..", "m..x", "", ":tag", ".hidden", "-dash", "a" * 81, "sp ace"],
)
def test_bad_names(tmp_path, tiny_gguf, name):
    with pytest.raises(OllamaExportError, match="invalid model"):
        ollama.install(tiny_gguf, name, models_dir=tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_not_deepseek4(tmp_path, llama_gguf):
    with pytest.raises(OllamaExportError, match="general.architecture is 'llama', expected 'deepseek4'"):
        ollama.install(llama_gguf, "x", models_dir=tmp_path / "models")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(OllamaExportError, match="not a readable GGUF"):
        ollama.install(junk, "x", models_dir=tmp_path / "models")
    with pytest.raises(OllamaExportError, match="no such GGUF"):
        ollama.install(tmp_path / "missing.gguf", "x", models_dir=tmp_path / "models")


def test_missing_shard(tmp_path, split_gguf):
    split_gguf[1].unlink()
    with pytest.raises(OllamaExportError, match="missing shard"):
        ollama.install(split_gguf[0], "x", models_dir=tmp_path / "models")


def test_disk_full_before_writing(tmp_path, tiny_gguf, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 5))
    with pytest.raises(OllamaExportError, match="disk full .* Nothing was installed"):
        ollama.install(tiny_gguf, "x", models_dir=tmp_path / "models")
    assert not (tmp_path / "models" / "manifests").exists()
    assert list((tmp_path / "models" / "blobs").iterdir()) == []


@pytest.mark.parametrize("fail_at", [1, 3, 5, 6])
def test_disk_full_midway_leaves_no_manifest(tmp_path, tiny_gguf, monkeypatch, fail_at):
    """ENOSPC at the n-th fsync (model, template, license, params, config, manifest): nothing installed,
    the blobs written so far are removed, no temp file is left."""
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    models = tmp_path / "models"
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OllamaExportError, match="disk full"):
        ollama.install(tiny_gguf, "x", models_dir=models)
    assert not (models / "manifests/registry.ollama.ai/library/x/latest").exists()
    assert list((models / "blobs").iterdir()) == []
    leftovers = [p for p in models.rglob("*") if p.is_file()]
    assert leftovers == []


def test_failed_forced_reinstall_keeps_the_old_model(tmp_path, tiny_gguf, monkeypatch):
    models = tmp_path / "models"
    old = ollama.install(tiny_gguf, "keep", models_dir=models)

    def broken(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ollama_store, "_json_blob", broken)
    with pytest.raises(OllamaExportError, match="disk full"):
        ollama.install(tiny_gguf, "keep", models_dir=models, force=True, num_ctx=1024)
    assert json.loads(old.manifest.read_text()) == old.manifest_data
    _check_store(models, old.manifest_data)  # the old blobs were not rolled back (they predate this run)


def test_cli_installs_and_reports_errors(tmp_path, tiny_gguf, capsys):
    models = tmp_path / "models"
    modelfile = tmp_path / "Modelfile"
    argv = [str(tiny_gguf), "--name", "cli:t", "--models-dir", str(models), "--modelfile", str(modelfile)]
    assert ollama.ollama_main(argv) == 0
    assert (models / "manifests/registry.ollama.ai/library/cli/t").is_file()
    assert modelfile.read_text().startswith("FROM ")
    assert ollama.ollama_main(argv) == 1
    assert "already installed; pass --force" in capsys.readouterr().err
    assert ollama.ollama_main(argv + ["--force"]) == 0
    assert ollama.ollama_main([str(tiny_gguf), "--name", "../x", "--modelfile-only"]) == 1
    assert "invalid model name" in capsys.readouterr().err
    only = tmp_path / "only" / "Modelfile"
    only.parent.mkdir()
    assert ollama.ollama_main([str(tiny_gguf), "--name", "y", "--modelfile-only", "--modelfile", str(only)]) == 0
    assert only.is_file()
    nowhere = tmp_path / "nodir" / "Modelfile"
    assert ollama.ollama_main([str(tiny_gguf), "--name", "y", "--modelfile-only", "--modelfile", str(nowhere)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{nowhere}: the folder {nowhere.parent} does not exist" in err[0], err


@pytest.mark.parametrize("cut", ["data", "header"])
def test_cli_truncated_gguf_is_one_line(tmp_path, tiny_gguf, capsys, cut):
    """A GGUF cut short (in its last tensor, or in its header): one line naming the file, the tensor or header
    and the fix; exit 1, nothing installed, no Modelfile."""
    from dsv4_gguf.cli import main
    from dsv4_gguf.gguf_io import GGUFFile

    last = max(GGUFFile(tiny_gguf).tensors.values(), key=lambda t: t.offset)
    size = last.offset + last.nbytes // 2 if cut == "data" else 40
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(tiny_gguf.read_bytes()[:size])
    models, modelfile = tmp_path / "models", tmp_path / "Modelfile"
    rc = main(["ollama", str(bad), "--name", "m", "--models-dir", str(models), "--modelfile", str(modelfile)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith(f"dsv4-gguf ollama: error: {bad}: not a readable GGUF file: truncated or corrupt GGUF: ")
    assert err[0].endswith("; re-download or re-convert it"), err
    if cut == "data":
        assert f"tensor '{last.name}' runs past the end of the file" in err[0] and f"the file has {size})" in err[0]
    assert not models.exists() and not modelfile.exists()


def test_modelfile_survives_ollamas_parser_rules(tiny_gguf):
    text = ollama.modelfile(tiny_gguf, 2048)
    body = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert body == ollama_template()  # no early `"""`, nothing the parser would drop
    with pytest.raises(OllamaExportError, match="cannot carry"):
        ollama.modelfile(tiny_gguf, 2048, license_text='say """hi"""')
    with pytest.raises(OllamaExportError, match="cannot carry"):
        ollama.modelfile(tiny_gguf, 2048, license_text="zero\u200dwidth")


def test_modelfile_never_replaces_the_model_or_another_modelfile(tmp_path, tiny_gguf, capsys):
    before = tiny_gguf.read_bytes()
    argv = [str(tiny_gguf), "--name", "y", "--modelfile-only", "--modelfile", str(tiny_gguf), "--overwrite"]
    assert ollama.ollama_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input" in err[0] and str(tiny_gguf) in err[0], err
    assert tiny_gguf.read_bytes() == before
    mf = tmp_path / "Modelfile"
    mf.write_text("FROM elsewhere\n")
    argv = [str(tiny_gguf), "--name", "y", "--modelfile-only", "--modelfile", str(mf)]
    assert ollama.ollama_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and str(mf) in err[0], err
    assert mf.read_text() == "FROM elsewhere\n"
    assert ollama.ollama_main(argv + ["--overwrite"]) == 0 and mf.read_text().startswith("FROM ")
    assert ollama.ollama_main(argv) == 0  # the same Modelfile again: nothing is replaced
