"""C++ runtime vs llama.cpp (llama-cpp-python 0.3.36, arch deepseek4) on the same GGUF (must-show 2).

Both run the 1,024-vocab tiny model (seed-0 ``random_weights`` in the release format, converted to F32 and
MXFP4_MOE by the converter: tests/support/small_model.py) on the same 600 random tokens (one prefill, all
logits).  Deliberate differences, and why the bounds are what they are:
* QAT simulation: our runtime (like the official model and the reference) rounds the window/compressed
  KV through e4m3 and the indexer q/k through e2m1 after a Hadamard (``act_quant`` / ``fp4_act_quant`` of the
  official kernel.py); llama.cpp does not.
  With ``qat=False`` the two agree closely (bounds ``NOQAT``); with QAT on the difference is the
  simulation itself (reported, bounded loosely).
* llama.cpp keeps its KV cache in F16 and quantizes activations for Q8_0/MXFP4 weights (so does our
  fast path, but the rounding points differ); random-weight MoE routers flip on such differences, so
  top-1 agreement is a rate, not equality.
"""

from __future__ import annotations

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

from support import report, small_model  # noqa: E402

_report, LINES = report.reporter_fixture("runtime vs llama.cpp (measured)")

# (variant, qat) -> (min top-1 agreement, max mean KLD)
BOUNDS = {
    ("F32", False): (0.97, 2e-3),
    ("F32", True): (0.90, 1e-2),
    ("MXFP4_MOE", False): (0.85, 2e-2),
    ("MXFP4_MOE", True): (0.85, 2e-2),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    args = small_model.small_args()
    models = small_model.SmallModels(tmp_path_factory.mktemp("rtll"), args, seed=0)
    paths = {v: models.gguf(v) for v in ("F32", "MXFP4_MOE")}
    toks = np.random.default_rng(1234).integers(0, args.vocab_size, 600)
    peer = {}
    for v, p in paths.items():
        llm = llama_cpp.Llama(
            model_path=str(p), n_ctx=1024, n_batch=1024, n_ubatch=1024, logits_all=True, verbose=False, n_threads=2
        )
        llm.eval(toks.tolist())
        peer[v] = np.array(llm.scores[: len(toks)], dtype=np.float64)
        del llm
    return paths, toks, peer


def _softmax(x):
    z = x - x.max(-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(-1, keepdims=True)


@pytest.mark.parametrize("variant,qat", list(BOUNDS))
def test_kld_and_top1_vs_llamacpp(setup, variant, qat):
    from dsv4_gguf import runtime

    paths, toks, peer = setup
    ours = runtime.load(paths[variant], threads=2, qat=qat).session(ctx=1024).prefill(toks, all_logits=True)
    theirs = peer[variant]
    pa, pb = _softmax(theirs), _softmax(ours.astype(np.float64))
    kld = (pa * (np.log(pa + 1e-300) - np.log(pb + 1e-300))).sum(-1)
    top1 = float((theirs.argmax(-1) == ours.argmax(-1)).mean())
    LINES.append(
        f"{variant:10s} qat={qat!s:5s} 600 tok: top-1 agree {top1:.4f}, mean KLD {kld.mean():.2e}, "
        f"KLD at token 0 {kld[0]:.2e}"
    )
    min_top1, max_kld = BOUNDS[(variant, qat)]
    assert top1 >= min_top1 and kld.mean() <= max_kld, (top1, kld.mean())


def test_converter_gguf_vs_llamacpp(tiny_ckpt, tmp_path):
    """The converter's own MXFP4_MOE file of the tiny checkpoint (real vocabulary, BF16 router/compressor/
    embedding/head, Q8_0 attention, MXFP4 experts).  Beyond QAT, one more deliberate difference shows here:
    ggml multiplies BF16 weights with activations rounded to BF16, we keep f32 activations (as the
    reference); with the synthetic checkpoint's 4x outlier channels that alone gives KLD ~6e-3 at token 0.
    Measured (600 tokens, qat=False): top-1 0.957, mean KLD 0.039."""
    from dsv4_gguf import runtime
    from dsv4_gguf.cli import main

    out = tmp_path / "tiny.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", "MXFP4_MOE", "--no-mtp"]) == 0
    toks = np.random.default_rng(7).integers(0, 129280, 600)
    llm = llama_cpp.Llama(
        model_path=str(out), n_ctx=1024, n_batch=1024, n_ubatch=1024, logits_all=True, verbose=False, n_threads=2
    )
    llm.eval(toks.tolist())
    theirs = np.array(llm.scores[: len(toks)], dtype=np.float64)
    del llm
    ours = runtime.load(out, threads=2, qat=False).session(ctx=1024).prefill(toks, all_logits=True)
    pa, pb = _softmax(theirs), _softmax(ours.astype(np.float64))
    kld = (pa * (np.log(pa + 1e-300) - np.log(pb + 1e-300))).sum(-1)
    top1 = float((theirs.argmax(-1) == ours.argmax(-1)).mean())
    LINES.append(f"converter MXFP4_MOE qat=False 600 tok: top-1 agree {top1:.4f}, mean KLD {kld.mean():.2e}")
    assert top1 >= 0.90 and kld.mean() <= 0.1, (top1, kld.mean())
