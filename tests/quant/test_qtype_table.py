"""One QType table: the C++ table, dsv4_gguf.constants and the gguf package agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS

from dsv4_gguf import _C
from dsv4_gguf.constants import QTYPES, WEIGHT_QTYPES

ROOT = Path(__file__).resolve().parents[2]


def test_cpp_table_equals_python_table():
    cpp = {row[0]: row for row in _C.qtype_table()}
    assert sorted(cpp) == sorted(int(t) for t in QTYPES)
    for t, info in QTYPES.items():
        tid, name, block, size, vdt, needs = cpp[int(t)]
        assert (name, block, size, vdt, needs) == (
            t.name,
            info.block_size,
            info.type_size,
            int(info.vec_dot_type),
            info.needs_imatrix,
        ), t.name


# gguf-py lists Q8_1 as (32, 40), an old float-d/float-s layout; ggml's block_q8_1 (ggml-common.h) is
# fp16 d, fp16 s, 32 int8 = 36 bytes.  Q8_1 is activation-only (never in a file): checked against ggml below.
GGUF_PY_STALE_SIZES = (GGMLQuantizationType.Q8_1,)


def test_table_matches_gguf_package():
    for t, info in QTYPES.items():
        assert GGMLQuantizationType[t.name] == t
        if t in GGUF_PY_STALE_SIZES:
            continue
        assert GGML_QUANT_SIZES[t] == (info.block_size, info.type_size), t.name


def test_table_matches_ggml(ggml):
    for t, info in QTYPES.items():
        assert ggml.row_size(int(t), info.block_size) == info.type_size, t.name
        if info.block_size > 1 and t in WEIGHT_QTYPES:  # the dot's activation format is ggml's CPU backend's
            assert ggml.cpu_traits(int(t)).vec_dot_type == int(info.vec_dot_type), t.name


def test_iq2xxs_grid_generated_from_gguf():
    gen = ROOT / "csrc" / "quant" / "gen_iq2xxs_grid.py"
    assert subprocess.run([sys.executable, str(gen), "--check"]).returncode == 0, (
        "csrc/quant/iq2xxs_grid.inc is stale: run python csrc/quant/gen_iq2xxs_grid.py"
    )
    # and the committed table decodes to gguf's grid
    text = (ROOT / "csrc" / "quant" / "iq2xxs_grid.inc").read_text()
    vals = [int(v) for line in text.splitlines() if not line.startswith("//") for v in line.split(",") if v.strip()]
    packed = np.array(vals, dtype=np.uint16)
    IQ2_XXS.init_grid()
    grid = np.asarray(IQ2_XXS.grid).reshape(256, 8)
    coords = (packed[:, None] >> (2 * np.arange(8))) & 3
    assert np.array_equal(np.array([8, 25, 43], np.float32)[coords], grid)


def test_iq2xs_iq2s_grids_generated_from_gguf():
    gen = ROOT / "csrc" / "quant" / "gen_iq2s_grids.py"
    assert subprocess.run([sys.executable, str(gen), "--check"]).returncode == 0, (
        "csrc/quant/iq2xs_grid.inc or iq2s_grid.inc is stale: run python csrc/quant/gen_iq2s_grids.py"
    )
    for name, cls, size in (("iq2xs_grid.inc", IQ2_XS, 512), ("iq2s_grid.inc", IQ2_S, 1024)):
        text = (ROOT / "csrc" / "quant" / name).read_text()
        vals = [int(v) for line in text.splitlines() if not line.startswith("//") for v in line.split(",") if v.strip()]
        packed = np.array(vals, dtype=np.uint16)
        cls.init_grid()
        grid = np.asarray(cls.grid).reshape(size, 8)
        coords = (packed[:, None] >> (2 * np.arange(8))) & 3
        assert np.array_equal(np.array([8, 25, 43], np.float32)[coords], grid), name


def test_iq3_grids_generated_from_gguf():
    gen = ROOT / "csrc" / "quant" / "gen_iq3_grids.py"
    assert subprocess.run([sys.executable, str(gen), "--check"]).returncode == 0, (
        "csrc/quant/iq3xxs_grid.inc or iq3s_grid.inc is stale: run python csrc/quant/gen_iq3_grids.py"
    )
    for name, cls, size in (("iq3xxs_grid.inc", IQ3_XXS, 256), ("iq3s_grid.inc", IQ3_S, 512)):
        text = (ROOT / "csrc" / "quant" / name).read_text()
        vals = [int(v) for line in text.splitlines() if not line.startswith("//") for v in line.split(",") if v.strip()]
        packed = np.array(vals, dtype=np.uint16)
        cls.init_grid()
        grid = np.asarray(cls.grid).reshape(size, 4)
        coords = (packed[:, None] >> (3 * np.arange(4))) & 7
        assert np.array_equal(np.array(cls.grid_map, np.float32)[coords], grid), name


def test_iq1s_grid_generated_from_gguf():
    from gguf.quants import IQ1_S

    gen = ROOT / "csrc" / "quant" / "gen_iq1s_grid.py"
    assert subprocess.run([sys.executable, str(gen), "--check"]).returncode == 0, (
        "csrc/quant/iq1s_grid.inc is stale: run python csrc/quant/gen_iq1s_grid.py"
    )
    text = (ROOT / "csrc" / "quant" / "iq1s_grid.inc").read_text()
    vals = [int(v) for line in text.splitlines() if not line.startswith("//") for v in line.split(",") if v.strip()]
    packed = np.array(vals, dtype=np.uint16)
    IQ1_S.init_grid()
    grid = np.asarray(IQ1_S.grid).reshape(2048, 8)
    coords = (packed[:, None] >> (2 * np.arange(8))) & 3
    assert np.array_equal(np.array([-1, 0, 1], np.float32)[coords], grid)
