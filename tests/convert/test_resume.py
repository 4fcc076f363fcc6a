"""Interrupted conversions resume to the same bytes as an uninterrupted run; what was written is verified."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dsv4_gguf.quantize.convert import JOURNAL, PARTIAL, convert, make_plan
from dsv4_gguf.quantize.recipes import load_recipe

from dsv4_gguf.checkpoint import Checkpoint


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


class Stop(Exception):
    pass


def _interrupt_after(n: int):
    seen = []

    def hook(name: str) -> None:
        seen.append(name)
        if len(seen) == n:
            raise Stop(name)

    return hook


def _plan(ck, out: Path, variant: str = "SOURCE"):
    return make_plan(ck.args, load_recipe(variant), out, ckpt_dir=ck.path, name="tiny")


@pytest.mark.parametrize("stop_at", [40, 170])  # inside the main file; inside the MTP sidecar
def test_resume_is_byte_identical(stop_at, tiny_ckpt, convert_tiny, tmp_path):
    ref = convert_tiny("SOURCE")
    out = tmp_path / ref.name
    with Checkpoint(tiny_ckpt) as ck:
        with pytest.raises(Stop):
            convert(_plan(ck, out), ck, on_tensor=_interrupt_after(stop_at))
        assert not out.exists() and not out.with_name("mtp-" + out.name).exists()  # nothing at final paths
        assert Path(str(out) + PARTIAL).exists() and Path(str(out) + JOURNAL).exists()
        done = []
        paths = convert(_plan(ck, out), ck, resume=True, on_tensor=done.append)
    assert len(done) == len(_plan_entries(tiny_ckpt, out)) - stop_at  # finished tensors were not redone
    for p, r in zip(paths, [ref, ref.with_name("mtp-" + ref.name)], strict=True):
        assert _sha(p) == _sha(r)
    assert not list(tmp_path.glob("*" + PARTIAL + "*"))


def _plan_entries(ck_dir, out):
    with Checkpoint(ck_dir) as ck:
        return _plan(ck, out).entries


def test_resume_redoes_corrupted_tensors(tiny_ckpt, convert_tiny, tmp_path):
    ref = convert_tiny("SOURCE")
    out = tmp_path / ref.name
    with Checkpoint(tiny_ckpt) as ck:
        plan = _plan(ck, out)
        with pytest.raises(Stop):
            convert(plan, ck, on_tensor=_interrupt_after(60))
        part = Path(str(out) + PARTIAL)
        f0 = plan.files[0]
        victim = 30  # a journaled tensor: damage one byte of it
        with open(part, "r+b") as fh:
            fh.seek(f0.offsets[victim] + 3)
            b = fh.read(1)
            fh.seek(f0.offsets[victim] + 3)
            fh.write(bytes([b[0] ^ 0xFF]))
        done = []
        convert(_plan(ck, out), ck, resume=True, on_tensor=done.append)
    assert done[0] == f0.entries[victim].tensor.name  # verification rejected it and everything after
    assert _sha(out) == _sha(ref)


def test_resume_with_other_variant_starts_over(tiny_ckpt, convert_tiny, tmp_path):
    ref = convert_tiny("MXFP4_MOE")
    out = tmp_path / ref.name
    with Checkpoint(tiny_ckpt) as ck:
        with pytest.raises(Stop):
            convert(_plan(ck, out, "SOURCE"), ck, on_tensor=_interrupt_after(20))
        convert(_plan(ck, out, "MXFP4_MOE"), ck, resume=True)  # header differs: nothing reused
    assert _sha(out) == _sha(ref)


def test_cli_resume(tiny_ckpt, convert_tiny, tmp_path, monkeypatch):
    from dsv4_gguf.quantize import convert as conv

    from dsv4_gguf.cli import main

    ref = convert_tiny("SOURCE", mtp=False)
    out = tmp_path / "x.gguf"
    real = conv.convert

    def interrupted(*a, **kw):  # Ctrl-C after 25 tensors: the CLI reports it and exits 130
        stop = _interrupt_after(25)

        def hook(name: str) -> None:
            try:
                stop(name)
            except Stop:
                raise KeyboardInterrupt from None

        kw["on_tensor"] = hook
        return real(*a, **kw)

    monkeypatch.setattr(conv, "convert", interrupted)
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--no-mtp", "--name", "tiny"]) == 130
    assert not out.exists()
    monkeypatch.setattr(conv, "convert", real)
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--no-mtp", "--name", "tiny", "--resume"]) == 0
    assert _sha(out) == _sha(ref)
