"""Weight overrides (`Model.override_weights`, `_C.Runtime.override_weight` / `clear_overrides`): the small model
with some weight matrices replaced in memory gives the logits of a GGUF file that stores those bytes, bit for bit;
leaving the block (normally or by an exception) gives the original logits back, bit for bit; every refusal names
the tensor and the reason and leaves the model as it was; session state files and MTP drafts follow the swap."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from ci_policy import needs_cuda_device
from support import small_model

from dsv4_gguf import _C, open_gguf, runtime

# one tensor of each kind of view: a 2-D attention matrix, stacked experts (3-D), the embedding, the head, a
# compressor matrix of a CSA layer (ratio 4); each at a type other than the base file's Q8_0
OVERRIDES = {
    "blk.1.attn_q_a.weight": "Q4_K",
    "blk.2.ffn_up_exps.weight": "Q2_K",
    "token_embd.weight": "Q5_K",
    "output.weight": "Q6_K",
    "blk.4.indexer_compressor_kv.weight": "Q4_0",
}


@pytest.fixture(scope="module")
def files(small_models, small_gguf, tmp_path_factory):
    """The base file (Q8_0) and the same conversion with OVERRIDES' tensors at their types."""
    out = tmp_path_factory.mktemp("override") / "small-ov.gguf"
    types = [f"^{re.escape(n)}$={t}" for n, t in OVERRIDES.items()]
    return small_gguf("Q8_0"), small_model.convert(small_models.ckpt, out, "Q8_0", tensor_types=types)


@pytest.fixture(scope="module")
def model(files):
    return runtime.load(files[0], threads=2)


@pytest.fixture(scope="module")
def toks(small_args):
    return np.random.default_rng(7).integers(0, small_args.vocab_size, 40).astype(np.int32)


def _logits(model, toks):
    return model.session(ctx=64).prefill(toks, all_logits=True)


def _stored(path, names):
    """name -> (type, bytes) as the GGUF at ``path`` stores them."""
    g = open_gguf(path, mtp=False)
    try:
        return {n: (g.info(n).qtype, np.ascontiguousarray(g.raw(n)).view(np.uint8).reshape(-1).copy()) for n in names}
    finally:
        g.close()


def test_override_equals_a_file_storing_those_bytes(files, model, toks):
    base, ov = files
    plain, fp = _logits(model, toks), model._rt.fingerprint()
    want = _logits(runtime.load(ov, threads=2), toks)
    # the two files differ in OVERRIDES' tensors only: the comparison isolates the swapped tensors
    a, b = open_gguf(base, mtp=False), open_gguf(ov, mtp=False)
    assert sorted(a.names()) == sorted(b.names())
    for n in a.names():
        same = a.info(n).qtype == b.info(n).qtype and np.array_equal(a.raw(n), b.raw(n))
        assert same != (n in OVERRIDES), n
        if n in OVERRIDES:
            assert b.info(n).qtype.name == OVERRIDES[n], n
    assert not np.array_equal(want, plain)

    weights = _stored(ov, OVERRIDES)
    with model.override_weights(weights):
        assert model._rt.overridden() == sorted(OVERRIDES)
        assert np.array_equal(_logits(model, toks), want)
        assert model._rt.fingerprint() != fp
    assert model._rt.overridden() == []
    assert np.array_equal(_logits(model, toks), plain)
    assert model._rt.fingerprint() == fp
    # triples from an iterator, type names and ids: the same
    with model.override_weights((n, q.name if i % 2 else int(q), d) for i, (n, (q, d)) in enumerate(weights.items())):
        assert np.array_equal(_logits(model, toks), want)
    assert np.array_equal(_logits(model, toks), plain)


def test_restored_after_an_exception(files, model, toks):
    plain = _logits(model, toks)
    with pytest.raises(KeyError, match="inside"), model.override_weights(_stored(files[1], OVERRIDES)):
        assert not np.array_equal(_logits(model, toks), plain)
        raise KeyError("inside")
    assert model._rt.overridden() == []
    assert np.array_equal(_logits(model, toks), plain)


def test_every_weight_matrix_can_be_overridden(files, model, toks):
    """Each 2-D/3-D weight of the file is a runtime view (Model::views() lists it): all of them at once, with
    their own bytes, are accepted and change nothing."""
    g = open_gguf(files[0], mtp=False)
    mats = [n for n in g.names() if len(g.info(n).shape) >= 2 and not re.search(r"_ape\.weight$|tid2eid", n)]
    g.close()
    assert len(mats) > 60 and "blk.0.ffn_gate_exps.weight" in mats and "output_hc_fn.weight" in mats
    plain = _logits(model, toks)
    with model.override_weights(_stored(files[0], mats)):
        assert model._rt.overridden() == sorted(mats)
        assert np.array_equal(_logits(model, toks), plain)


def _cases(files):
    base = _stored(files[0], ["blk.1.attn_q_a.weight"])
    qt, qa = base["blk.1.attn_q_a.weight"]
    ov = _stored(files[1], ["blk.1.attn_q_a.weight"])["blk.1.attn_q_a.weight"]
    q_a, q_b, norm = "blk.1.attn_q_a.weight", "blk.1.attn_q_b.weight", "blk.0.attn_norm.weight"
    n = qa.size
    return [
        ({"nope.weight": (qt, qa)}, "nope.weight", "no tensor of this name"),
        ({norm: ("F32", np.zeros(256 * 4, np.uint8))}, norm, "not a weight matrix"),
        ({"blk.1.attn_compressor_ape.weight": ("F32", qa)}, "attn_compressor_ape", "not a weight matrix"),
        ({q_a: (15, qa)}, q_a, r"type Q8_K \(id 15\) is not a weight type"),
        ({q_a: (4, qa)}, q_a, r"type unknown \(id 4\) is not a weight type"),
        ({q_a: (qt, qa[:-1])}, q_a, rf"got {n - 1} bytes; Q8_0 needs 128 rows x 272 bytes = {n}"),
        ({q_a: ("Q4_K", qa)}, q_a, rf"got {n} bytes; Q4_K needs 128 rows x 144 bytes"),
        ({q_b: ("Q2_K", qa)}, q_b, "rows of 128 elements are not a multiple of Q2_K's block of 256"),
        # a good override first: undone when the second is refused
        ({q_a: ov, "blk.9.attn_q_a.weight": ov}, "blk.9.attn_q_a.weight", "no tensor of this name"),
    ]


def test_refusals_name_the_tensor_and_leave_the_model(files, model, toks):
    plain, fp = _logits(model, toks), model._rt.fingerprint()
    for weights, name, why in _cases(files):
        with pytest.raises(ValueError, match=rf"override_weight\('[^']*{re.escape(name)}[^']*'\): .*{why}"):
            with model.override_weights(weights):
                pytest.fail("the block must not run")
        assert model._rt.overridden() == [], name
        assert np.array_equal(_logits(model, toks), plain), name
        assert model._rt.fingerprint() == fp
    with pytest.raises(TypeError, match="C-contiguous"):
        model._rt.override_weight("blk.1.attn_q_a.weight", 8, np.zeros((2, 8), np.uint8)[:, ::2])
    with pytest.raises(TypeError, match="uint8 array"):
        model._rt.override_weight("blk.1.attn_q_a.weight", 8, np.zeros(4, np.float32))
    with (
        pytest.raises(ValueError, match="'Q9_K' is not a ggml type name"),
        model.override_weights({"x": ("Q9_K", b"")}),
    ):
        pass
    assert np.array_equal(_logits(model, toks), plain)


def test_nested_blocks_are_refused(files, model, toks):
    weights = _stored(files[1], ["blk.1.attn_q_a.weight"])
    with model.override_weights(weights):
        inside = _logits(model, toks)
        with pytest.raises(RuntimeError, match="nested override_weights"), model.override_weights(weights):
            pass
        assert model._rt.overridden() == ["blk.1.attn_q_a.weight"]  # the outer block's overrides stay
        assert np.array_equal(_logits(model, toks), inside)


def test_session_state_is_tied_to_the_overrides(files, model, toks, tmp_path):
    weights = _stored(files[1], ["blk.2.ffn_up_exps.weight"])
    plain_state, ov_state = tmp_path / "plain.state", tmp_path / "ov.state"
    s = model.session(ctx=64)
    s.prefill(toks[:20])
    s.save(plain_state)
    want_plain = s.decode(int(toks[20]))
    with model.override_weights(weights):
        s = model.session(ctx=64)
        s.prefill(toks[:20])
        s.save(ov_state)
        want_ov = s.decode(int(toks[20]))
        t = model.session(ctx=64)
        with pytest.raises(
            _C.SessionStateError, match=r"another model .*weight overrides are part of the fingerprint: 1 active"
        ):
            t.load_state(plain_state)
        t.load_state(ov_state)
        assert np.array_equal(t.decode(int(toks[20])), want_ov)
    t = model.session(ctx=64)
    with pytest.raises(_C.SessionStateError, match=r"another model .*fingerprint: 0 active here"):
        t.load_state(ov_state)
    t.load_state(plain_state)
    assert np.array_equal(t.decode(int(toks[20])), want_plain)
    assert not np.array_equal(want_plain, want_ov)


def test_no_swap_while_a_session_call_runs(files, model, small_args):
    """A swap while another thread's session call runs is refused (SessionBusyError), and a session call during
    a swap too; the swapped bytes here are the file's own, so every forward gives the plain logits."""
    long = np.random.default_rng(3).integers(0, small_args.vocab_size, 500).astype(np.int32)
    same = _stored(files[0], ["blk.2.ffn_up_exps.weight"])
    want = model.session(ctx=512).prefill(long)
    s, got, refused = model.session(ctx=512), [], []

    def run() -> None:
        for _ in range(6):
            s.reset()
            try:
                got.append(s.prefill(long))
            except _C.SessionBusyError as e:
                refused.append(str(e))

    th = threading.Thread(target=run)
    th.start()
    busy = []
    try:
        while th.is_alive() and not busy:
            try:
                with model.override_weights(same):
                    pass
            except _C.SessionBusyError as e:
                busy.append(str(e))
    finally:
        th.join()
        model._rt.clear_overrides()  # an exit refused while a call ran leaves the overrides in place
    assert busy and re.search(r"session call\(s\) are running on this model", busy[0]), busy
    assert all("weights are being swapped" in e for e in refused), refused
    assert got and all(np.array_equal(g, want) for g in got)


def test_mtp_sidecar_is_refused_and_drafts_follow(convert_tiny):
    """The sidecar's tensors are refused; the draft-head copy is made again after a swap and equals the first."""
    path = convert_tiny("MXFP4_MOE")
    m = runtime.load(path, threads=2)
    n_layers = m.config["n_layers"]
    name = f"blk.{n_layers}.attn_q_a.weight"
    toks = np.arange(5, 25, dtype=np.int32)

    def drafts() -> np.ndarray:
        s = m.session(ctx=64, mtp=True)
        s.prefill(toks)
        return s.mtp(np.append(toks[1:], 3), all_logits=True)

    before = drafts()
    with pytest.raises(ValueError, match=rf"override_weight\('{re.escape(name)}'\): is a tensor of the MTP sidecar"):
        with m.override_weights({name: ("Q8_0", b"")}):
            pass
    # the same weights at Q4_0 (quantized from the stored ones): every draft changes, and comes back after
    g = open_gguf(path, mtp=False)
    x = np.ascontiguousarray(g.dequantize("blk.0.attn_q_a.weight"), np.float32).reshape(-1, 256)
    g.close()
    with m.override_weights({"blk.0.attn_q_a.weight": ("Q4_0", _C.quantize_rows(2, x))}):
        inside = drafts()
    assert not np.array_equal(inside, before)
    assert np.array_equal(drafts(), before)


@needs_cuda_device
def test_cuda_model_is_refused(files, toks):
    m = runtime.load(files[0], threads=2, device="cuda")
    weights = _stored(files[1], ["blk.1.attn_q_a.weight"])
    with pytest.raises(ValueError, match=r"override_weight\('blk\.1\.attn_q_a\.weight'\): .*CUDA device.*CPU only"):
        with m.override_weights(weights):
            pass
    assert m._rt.overridden() == []
    cpu = runtime.load(files[0], threads=2)
    plain = _logits(cpu, toks)
    with cpu.override_weights(weights), pytest.raises(ValueError, match="clear the overrides before uploading"):
        _C.CudaModel(cpu._rt, 0)
    assert np.array_equal(_logits(cpu, toks), plain)
