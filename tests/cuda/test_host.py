"""Host-side checks of the CUDA backend that run on every machine: launch geometry, the device upload plan
of real GGUFs, the in-kernel decoders executed on the host (bit-exact vs csrc/quant), and the clear errors
of ``load(path, device="cuda")`` where CUDA cannot be used (in a process that sees no device, whatever this
machine has)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from ci_policy import needs_cuda_build
from support import small_model

from dsv4_gguf import _C, runtime
from dsv4_gguf.cuda import available_backends, cuda_info, parse_device, unavailable_reason

INFO = cuda_info()
CUDA_OK = unavailable_reason() is None
# the no-device message of a build with the CUDA target, else the not-built one (dsv4_gguf/cuda.py)
NO_DEVICE = "no CUDA device is visible" if INFO["compiled"] else "build has none.*DSV4_CUDA=ON"

# ggml type id -> (elements per block, bytes per block); mirrors plan.cpp / dequant.cuh
GEOM = {0: (32, 128), 1: (32, 64), 30: (32, 64), 8: (32, 34), 39: (32, 17), 12: (256, 144), 14: (256, 210)}


@pytest.mark.parametrize("qtype", sorted(GEOM))
@pytest.mark.parametrize("rows,cols", [(2048, 4096), (4096, 2048), (7, 512), (129280, 4096)])
def test_gemv_config_geometry(qtype, rows, cols):
    c = _C.cuda_hooks.gemv_config(qtype, rows, cols, 1, 6)
    elems, nbytes = GEOM[qtype]
    assert (c["block_elems"], c["block_bytes"]) == (elems, nbytes)
    assert c["threads"] == 32 * c["warps"] == 256
    assert c["grid"] == (-(-rows // c["warps"]), 6)
    assert c["row_bytes"] == cols // elems * nbytes
    if qtype not in (0, 1, 30):  # the row size the CPU quantizer writes
        assert c["row_bytes"] == _C.quantize_rows(qtype, np.zeros((1, cols), np.float32)).shape[1]
    # 32 lanes cover the staged chunk exactly; the chunk is whole 16-byte words (16-byte staging loads)
    assert 32 * c["lane_elems"] == c["chunk_blocks"] * elems
    assert c["chunk_blocks"] * nbytes % 16 == 0
    assert c["smem_bytes"] == c["warps"] * c["chunk_blocks"] * nbytes <= 48 * 1024
    # the widest staging load that divides the row; Flash widths (D = 4096, I = 2048) give 16-byte rows
    lb = c["load_bytes"]
    assert lb in (1, 4, 8, 16) and c["row_bytes"] % lb == 0 and (lb == 16 or c["row_bytes"] % (2 * lb) != 0)
    if cols % 2048 == 0:
        assert lb == 16


def test_gemv_config_errors():
    with pytest.raises(ValueError, match="no CUDA kernel"):
        _C.cuda_hooks.gemv_config(10, 64, 256)  # Q2_K
    with pytest.raises(ValueError, match="multiple of 256"):
        _C.cuda_hooks.gemv_config(12, 64, 384)
    with pytest.raises(ValueError, match="n_vec"):
        _C.cuda_hooks.gemv_config(8, 64, 256, 9)
    with pytest.raises(ValueError, match="n_slots"):
        _C.cuda_hooks.gemv_config(8, 64, 256, 1, 0)


@pytest.mark.parametrize("variant", ["F32", "BF16", "Q8_0", "MXFP4_MOE", "Q4_K_M"])
def test_upload_plan_covers_every_tensor(small_gguf, small_args, variant):
    from gguf import GGUFReader

    path = small_gguf(variant)
    rt = _C.Runtime(str(path), threads=1)
    plan = _C.cuda_hooks.upload_plan(rt)
    ents = plan["entries"]
    offs = [e["offset"] for e in ents]
    assert all(o % plan["alignment"] == 0 for o in offs)
    assert offs == sorted(offs)
    for a, b in zip(ents, ents[1:], strict=False):  # no overlap
        assert a["offset"] + a["bytes"] <= b["offset"]
    assert ents[-1]["offset"] + ents[-1]["bytes"] == plan["total_bytes"]
    by_name = {e["name"]: e for e in ents}
    assert len(by_name) == len(ents), "entry names must be unique"
    # every 2-D GGUF tensor the forward pass reads is uploaded as stored (same type, same bytes)
    r = GGUFReader(str(path))
    n_weights = 0
    for t in r.tensors:
        if len(t.shape) < 2 or t.name.endswith("tid2eid.weight") or "nextn" in t.name or t.name.endswith("_ape.weight"):
            continue
        e = by_name.get(t.name)
        assert e is not None, f"{t.name} ({variant}) is missing from the upload plan"
        assert e["type"] == t.tensor_type.name and e["bytes"] == int(t.n_bytes), t.name
        n_weights += 1
    assert n_weights > 20
    # hash layers carry their tid2eid tables; every layer its norms
    for i in range(small_args.n_hash_layers):
        assert by_name[f"blk.{i}.tid2eid"]["kind"] == "i32"
    for i in range(small_args.n_layers):
        assert by_name[f"blk.{i}.attn_norm"]["cols"] == small_args.dim
    # the arena holds the weights and nothing much else (alignment padding only)
    payload = sum(e["bytes"] for e in ents)
    assert payload <= plan["total_bytes"] < payload + plan["alignment"] * len(ents)


def test_upload_plan_names_unsupported_tensor(tmp_path, small_models):
    # the Q8_0 recipe (every type has a CUDA kernel) with one matrix put in Q2_K, which has none
    path = small_model.convert(small_models.ckpt, tmp_path / "q2k.gguf", "Q8_0", tensor_types=["attn_q_a=Q2_K"])
    rt = _C.Runtime(str(path), threads=1)
    with pytest.raises(ValueError, match=r"attn_q_a.*Q2_K.*no CUDA kernel.*device='cpu'"):
        _C.cuda_hooks.upload_plan(rt)


def test_parse_device():
    assert parse_device("cpu") is None
    assert parse_device("cuda") == 0
    assert parse_device("CUDA:1") == 1
    for bad in ("gpu", "cuda:", "cuda:x", "cuda:-1"):
        with pytest.raises(ValueError, match="unknown device"):
            parse_device(bad)
    with pytest.raises(TypeError):
        parse_device(0)  # type: ignore[arg-type]


def test_available_backends():
    b = available_backends()
    assert b[0] == "cpu"
    assert ("cuda" in b) == CUDA_OK


def _without_devices(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter that sees no CUDA device (CUDA_VISIBLE_DEVICES empty), on any machine."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)


LOAD_WITHOUT_DEVICE = """
import sys
from dsv4_gguf import runtime
gguf, absent = sys.argv[1:]
for path, device in ((gguf, "cuda"), (absent, "cuda:0")):
    try:
        runtime.load(path, device=device)
        print("loaded", device)
    except RuntimeError as e:
        print("RuntimeError:", e)
m = runtime.load(gguf, threads=1, device="cpu")  # the default backend is unaffected
print("cpu", m.device, m.session(ctx=8).decode(1).shape)
"""


def test_load_cuda_errors_clearly_without_device(small_gguf, tmp_path):
    r = _without_devices(LOAD_WITHOUT_DEVICE, str(small_gguf("Q8_0")), str(tmp_path / "absent.gguf"))
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 3, r.stdout
    # the check comes before the file is opened: a missing backend is reported, not a missing file
    for line in lines[:2]:
        assert line.startswith("RuntimeError:") and re.search(NO_DEVICE, line), line
    assert lines[2] == "cpu cpu (1024,)"
    with pytest.raises(ValueError, match="unknown device"):
        runtime.load(small_gguf("Q8_0"), device="tpu")


def test_cli_device_cuda_reports_why(small_gguf):
    code = "import sys; from dsv4_gguf.cli import main; sys.exit(main(sys.argv[1:]))"
    r = _without_devices(code, "run", str(small_gguf("Q8_0")), "-p", "x", "-n", "1", "--device", "cuda")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "error:" in r.stderr and re.search(NO_DEVICE, r.stderr), r.stderr


def _raw(qtype: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stored bytes, the CPU's decoded f32) for one type."""
    if qtype == 0:
        return w.view(np.uint8), w
    if qtype == 1:
        h = w.astype(np.float16)
        return h.view(np.uint8), h.astype(np.float32)
    if qtype == 30:
        h = w.astype(ml_dtypes.bfloat16)
        return h.view(np.uint8), h.astype(np.float32)
    q = _C.quantize_rows(qtype, w)
    return q, _C.dequantize_rows(qtype, q)


@needs_cuda_build
@pytest.mark.parametrize("qtype", sorted(GEOM))
def test_cuda_decoders_bit_exact_on_host(qtype):
    """The __host__ __device__ block decoders of dequant.cuh (run here on the host) equal csrc/quant."""
    rng = np.random.default_rng(qtype)
    cols = 1024
    # rows of very different scales (tiny to huge) reach subnormal fp16 / E8M0 and large exponents
    w = (rng.standard_normal((12, cols)) * np.logspace(-6, 4, 12)[:, None]).astype(np.float32)
    q, ref = _raw(qtype, np.ascontiguousarray(w))
    got = _C.cuda_hooks.dequant_rows_host(qtype, np.ascontiguousarray(q.reshape(12, -1)), cols)
    np.testing.assert_array_equal(got.view(np.uint32), ref.reshape(12, cols).view(np.uint32))


@needs_cuda_build
@pytest.mark.parametrize("qtype", [8, 39, 12, 14])
def test_cuda_decoders_on_random_bytes(qtype):
    """Arbitrary block bytes (every scale code, every quant code), not only what our quantizer writes."""
    elems, nbytes = GEOM[qtype]
    rng = np.random.default_rng(100 + qtype)
    q = rng.integers(0, 256, (16, 4 * nbytes), dtype=np.uint8)
    if qtype in (8, 12, 14):  # keep fp16 scales finite (no inf/nan codes: exponent 31)
        offs = {8: [1], 12: [1, 3], 14: [209]}[qtype]
        for b in range(4):
            for o in offs:
                q[:, b * nbytes + o] &= 0x7B
    ref = _C.dequantize_rows(qtype, q)
    got = _C.cuda_hooks.dequant_rows_host(qtype, q, 4 * elems)
    np.testing.assert_array_equal(got.view(np.uint32), ref.reshape(got.shape).view(np.uint32))
