"""The census of the real releases equals the totals of their published ``model.safetensors.index.json``
(Hugging Face deepseek-ai/DeepSeek-V4-Flash: 69,187 tensors, 159,609,485,896 bytes; -Pro: 145,116 tensors,
864,704,792,696 bytes)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from dsv4_gguf.cli import main
from dsv4_gguf.config import PRESETS
from dsv4_gguf.layout import census

FLASH_BY_DTYPE = {"BF16": 433, "F32": 417, "F8_E4M3": 375, "F8_E8M0": 34167, "I64": 3, "I8": 33792}


def test_flash_census_matches_published_totals():
    c = census(PRESETS["flash"])
    assert c.tensors == 69_187
    assert c.nbytes == 159_609_485_896
    assert c.by_dtype == FLASH_BY_DTYPE


def test_pro_census_matches_published_totals():
    c = census(PRESETS["pro"])
    assert c.tensors == 145_116
    assert c.nbytes == 864_704_792_696


@pytest.mark.parametrize(
    "preset,tensors,nbytes",
    [("flash", "69,187", "159,609,485,896"), ("pro", "145,116", "864,704,792,696")],
)
def test_synth_dry_run_prints_totals(capsys, preset, tensors, nbytes):
    assert main(["synth", "--preset", preset, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"tensors: {tensors}" in out
    assert f"bytes:   {nbytes}" in out
    if preset == "flash":
        for dt, n in FLASH_BY_DTYPE.items():
            assert f"{dt:<8} {n:>8,} tensors" in out


def test_console_script_dry_run():
    """The installed entry point (not just main()) gives the same census."""
    exe = shutil.which("dsv4-gguf")
    assert exe, "the dsv4-gguf console script is not on PATH; install the package as the README says"
    r = subprocess.run([exe, "synth", "--preset", "flash", "--dry-run"], capture_output=True, text=True, check=True)
    assert "tensors: 69,187" in r.stdout and "bytes:   159,609,485,896" in r.stdout
