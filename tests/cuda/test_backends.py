"""The runtime on CUDA device 0 against the CPU runtime in exact mode (f32 activations against dequantized
weights: the math the CUDA kernels implement) on the small seeded model.  Every test needs a device and skips
with the no-CUDA-device reason without one.  The CPU runtime's own reference (exact-mode decode steps equal one
prefill, bit for bit) is tested in tests/runtime/test_session.py."""

from __future__ import annotations

import numpy as np
import pytest
from ci_policy import needs_cuda_device
from support import parity

from dsv4_gguf import runtime
from dsv4_gguf.reference.tolerances import assert_close

pytestmark = needs_cuda_device

N_TOK = 300  # > window (128): ring reuse; > 2 HCA blocks (128); > index_topk (8) CSA entries


@pytest.fixture(scope="module")
def tokens() -> np.ndarray:
    return np.random.default_rng(77).integers(0, 1024, N_TOK).astype(np.int32)


@pytest.mark.parametrize("variant", ["MXFP4_MOE", "Q4_K_M", "BF16"])
def test_cuda_decode_matches_cpu_exact(small_gguf, tokens, variant):
    path = small_gguf(variant)
    ref = runtime.load(path, threads=2, exact=True).session(ctx=512).prefill(tokens, all_logits=True)
    m = runtime.load(path, threads=2, exact=True, device="cuda")
    s = m.session(ctx=512)
    got = np.stack([s.decode(int(t)) for t in tokens])
    assert np.isfinite(got).all()
    c = parity.compare(ref, got, {}, {})
    # Before any router/indexer near-tie flip the logits agree to fp32 reduction order; a flip later
    # changes the KV of one token, hence the rate bounds over the whole run (no taps on the GPU yet).
    parity.check(c, f"cuda {variant}", min_top1=0.97, max_mean_kld=1e-3, strict=False)
    # the first tokens (no compressed entry, no top-k yet): reduction order + QAT grid steps only
    assert_close(got[:8], ref[:8], "chunking_qat", f"cuda {variant} first 8 tokens")


def test_cuda_reset_repeats_and_context_errors(small_gguf, tokens):
    m = runtime.load(small_gguf("MXFP4_MOE"), threads=2, exact=True, device="cuda")
    s = m.session(ctx=64)
    a = s.prefill(tokens[:40], all_logits=True)
    s.reset()
    b = s.prefill(tokens[:40], all_logits=True)
    np.testing.assert_array_equal(a, b)  # deterministic: same kernels, same order
    with pytest.raises(ValueError, match="context overflow"):
        s.prefill(tokens[:40])
    with pytest.raises(IndexError, match="outside the vocabulary"):
        s.decode(5000)


def test_cuda_session_refuses_unsupported_options(small_gguf):
    m = runtime.load(small_gguf("MXFP4_MOE"), threads=1, device="cuda")
    with pytest.raises(NotImplementedError, match="kv_dtype='f32'"):
        m.session(ctx=64, kv_dtype="fp8")
