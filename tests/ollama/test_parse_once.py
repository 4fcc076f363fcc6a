"""`dsv4-gguf ollama` parses each GGUF file's header exactly once, with dsv4_gguf's own reader: the Modelfile,
the store install and (for a split model) the merge all use the one ``inspect_gguf`` result; the `gguf`
package's ``GGUFReader`` (5-10 s on a 129k-token vocabulary) is never used."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from dsv4_gguf import gguf_io, ollama


@pytest.fixture
def parses(monkeypatch) -> Counter:
    """Header parses per file (``GGUFFile``); any ``gguf.GGUFReader`` use fails the test."""
    import gguf as gguf_package

    count: Counter = Counter()
    real_init = gguf_io.GGUFFile.__init__

    def counting_init(self, path):
        count[str(path)] += 1
        real_init(self, path)

    def no_reader(*args, **kwargs):
        raise AssertionError("ollama export parsed a GGUF with gguf.GGUFReader")

    monkeypatch.setattr(gguf_io.GGUFFile, "__init__", counting_init)
    monkeypatch.setattr(gguf_package, "GGUFReader", no_reader)
    monkeypatch.setattr(gguf_package.gguf_reader, "GGUFReader", no_reader)
    return count


def test_cli_install_parses_the_gguf_once(tmp_path, tiny_gguf, parses, capsys):
    models = tmp_path / "models"
    argv = [str(tiny_gguf), "--name", "dsv4:once", "--models-dir", str(models)]
    assert ollama.ollama_main(argv) == 0, capsys.readouterr().err
    assert (models / "manifests/registry.ollama.ai/library/dsv4/once").is_file()
    assert parses == {str(tiny_gguf): 1}


def test_cli_install_of_a_split_parses_each_shard_once(tmp_path, tiny_gguf, split_gguf, parses, capsys):
    models = tmp_path / "models"
    argv = [str(split_gguf[0]), "--name", "dsv4-split", "--models-dir", str(models)]
    assert ollama.ollama_main(argv) == 0, capsys.readouterr().err
    assert len(split_gguf) > 1 and parses == {str(p): 1 for p in split_gguf}
    manifest = (models / "manifests/registry.ollama.ai/library/dsv4-split/latest").read_text()
    digest = json.loads(manifest)["layers"][0]["digest"].replace(":", "-")
    assert (models / "blobs" / digest).read_bytes() == tiny_gguf.read_bytes()  # merged = the unsplit file


def test_modelfile_only_parses_the_gguf_once(tmp_path, tiny_gguf, parses, capsys):
    out = tmp_path / "Modelfile"
    argv = [str(tiny_gguf), "--name", "dsv4", "--modelfile-only", "--modelfile", str(out)]
    assert ollama.ollama_main(argv) == 0, capsys.readouterr().err
    assert out.read_text().startswith("FROM ")
    assert parses == {str(tiny_gguf): 1}
