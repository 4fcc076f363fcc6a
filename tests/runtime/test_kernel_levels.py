"""The runtime gives the same bits at every SIMD level: prefill (the tiled rows x tokens kernels, every
count of 1-4 tokens per tile) and decode logits of the small model with DSV4_KERNELS=avx2 equal those of
DSV4_KERNELS=avx512 (the default level) on every weight recipe.  Each level runs in its own process (the level is chosen
once per process)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from dsv4_gguf import _C

pytestmark = pytest.mark.skipif(
    not _C.build_info()["cpu_avx512"], reason="this CPU has no AVX-512 F/BW/DQ/VL/VNNI: one SIMD level only"
)

RUN = """
import sys, numpy as np
from dsv4_gguf import runtime, _C
m = runtime.load(sys.argv[1], threads=2)
s = m.session(ctx=256)
toks = np.load(sys.argv[2]).tolist()
out = [s.prefill(toks[:151], all_logits=True).ravel()]  # 16-token blocks: 9 x (4 x 4), then 4 + 3
out.append(s.prefill(toks[151:153], all_logits=True).ravel())  # a 2-token chunk (a speculative verify)
nxt = int(out[-1][-1024:].argmax())
for _ in range(4):
    l = s.decode(nxt)
    out.append(l.ravel())
    nxt = int(l.argmax())
np.save(sys.argv[3], np.concatenate(out))
print(_C.build_info()["kernel_impl"])
"""


@pytest.mark.parametrize("variant", ["Q8_0", "MXFP4_MOE", "Q4_K_M", "BF16"])
def test_avx2_and_avx512_logits_identical(variant, small_gguf, tokens600, tmp_path):
    path = small_gguf(variant)
    np.save(tmp_path / "toks.npy", tokens600)
    got = {}
    for level in ("avx512", "avx2"):
        drop = ("DSV4_KERNELS", "DSV4_FORCE_REF", "DSV4_FORCE_AVX2")
        env = {k: v for k, v in os.environ.items() if k not in drop} | {"DSV4_KERNELS": level}
        out = tmp_path / f"{level}.npy"
        r = subprocess.run(
            [sys.executable, "-c", RUN, str(path), str(tmp_path / "toks.npy"), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip() == level
        got[level] = np.load(out)
    assert np.isfinite(got["avx512"]).all()
    assert np.array_equal(got["avx512"].view(np.uint32), got["avx2"].view(np.uint32)), (
        f"{variant}: logits differ between AVX2 and AVX-512 (max |diff| {np.abs(got['avx512'] - got['avx2']).max()})"
    )
