"""Session state files on hostile input (issue 11): a state restores only into the model, KV dtype, options
and context it fits; another model's, a truncated, corrupt, forged or old-version file is refused with an
error naming the file, the mismatch and the fix, and the session it was loaded into is left unchanged."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hardening.runtime_support import HEADER_BYTES, forge, read_header, state_checksum, tiny_gguf

from dsv4_gguf import _C, runtime


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt_state")
    return {
        "a": tiny_gguf(d / "a.gguf", seed=0),
        "b": tiny_gguf(d / "b.gguf", seed=1),
        "v512": tiny_gguf(d / "v512.gguf", seed=0, vocab=512),
    }


@pytest.fixture(scope="module")
def model(paths):
    return runtime.load(paths["a"], threads=2)


@pytest.fixture(scope="module")
def toks() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 512, 400).astype(np.int32)


@pytest.fixture(scope="module")
def saved(model, toks, tmp_path_factory):
    """A state at pos 131 (mid-block for m=4 and m=128, window wrapped) and the logits that follow it."""
    path = tmp_path_factory.mktemp("st") / "s131.state"
    s = model.session(ctx=512)
    s.prefill(toks[:131])
    s.save(path)
    follow = s.prefill(toks[131:140], all_logits=True)
    return path, path.read_bytes(), follow


class Victim:
    """A session holding 5 tokens of its own, and a twin to check that a refused load changed nothing."""

    def __init__(self, model, toks, ctx: int = 512, kv_dtype: str = "f32"):
        self.s, self.twin = model.session(ctx, kv_dtype), model.session(ctx, kv_dtype)
        self.s.prefill(toks[200:205])
        self.twin.prefill(toks[200:205])

    def unchanged(self, toks) -> bool:
        return self.s.pos == 5 and np.array_equal(
            self.s.prefill(toks[205:209], all_logits=True), self.twin.prefill(toks[205:209], all_logits=True)
        )


def test_checksum_model_matches_the_runtime(model, paths, saved):
    """The Python re-implementation used to forge headers reproduces the runtime's checksum; the header
    carries the model's fingerprint, which differs for other weights of the same shapes."""
    _, data, _ = saved
    assert struct.unpack("<Q", data[-8:])[0] == state_checksum(data[:-8])
    assert state_checksum(data[:-9]) != state_checksum(data[:-8])
    h = read_header(data)
    assert h["fingerprint"] == model._rt.fingerprint() == runtime.load(paths["a"], threads=1)._rt.fingerprint()
    assert h["fingerprint"] != runtime.load(paths["b"], threads=1)._rt.fingerprint()
    assert h["version"] == 2 and h["pos"] == 131 and h["ctx"] == 512 and h["vocab"] == 1024
    assert HEADER_BYTES + h["payload"] + 8 == len(data)


def test_restore_into_other_ctx(model, saved, toks, tmp_path):
    """The state does not depend on ctx: a session with a different ctx that holds pos resumes identically."""
    path, _, follow = saved
    for ctx in (140, 4096):
        r = model.session(ctx=ctx)
        r.load_state(path)
        assert r.pos == 131 and np.array_equal(r.prefill(toks[131:140], all_logits=True), follow)
    v = Victim(model, toks, ctx=130)
    with pytest.raises(
        RuntimeError,
        match=r"s131\.state.*holds 131 tokens \(saved with ctx 512\), more than this "
        r"session's ctx 130; create the session with ctx >= 131",
    ):
        v.s.load_state(path)
    assert v.unchanged(toks)


def test_another_model_is_refused(paths, saved, toks):
    path, _, _ = saved
    other = runtime.load(paths["b"], threads=1)  # same architecture and sizes, other weights
    v = Victim(other, toks)
    with pytest.raises(
        _C.SessionStateError,
        match=r"s131\.state.*another model \(weights fingerprint \d+, this model "
        r"\d+\); restore it into a session of the GGUF it was saved from",
    ):
        v.s.load_state(path)
    assert v.unchanged(toks)
    small = runtime.load(paths["v512"], threads=1)
    v = Victim(small, toks)
    with pytest.raises(RuntimeError, match=r"another model or KV dtype \(vocab 1024, this model has 512\)"):
        v.s.load_state(path)
    assert v.unchanged(toks)


def test_other_kv_dtype_mtp_and_options_are_refused(model, paths, saved, toks):
    path, _, _ = saved
    v = Victim(model, toks, kv_dtype="fp8")
    with pytest.raises(
        RuntimeError,
        match=r"saved with kv_dtype 'f32'.*this session uses 'fp8'; create the "
        r"session with kv_dtype='f32'",
    ):
        v.s.load_state(path)
    assert v.unchanged(toks)
    exact = runtime.load(paths["a"], threads=1, exact=True)
    v = Victim(exact, toks)
    with pytest.raises(
        RuntimeError,
        match=r"computed with qat=1 exact=0, this runtime has qat=1 exact=1; load "
        r"the model with the same options",
    ):
        v.s.load_state(path)
    assert v.unchanged(toks)


@pytest.mark.parametrize("where", ["empty", "header", "payload", "checksum"])
def test_truncated_files_are_refused(model, saved, toks, tmp_path, where):
    _, data, _ = saved
    cut = {"empty": 0, "header": HEADER_BYTES - 9, "payload": len(data) // 2, "checksum": len(data) - 3}[where]
    (tmp_path / "cut.state").write_bytes(data[:cut])
    v = Victim(model, toks)
    with pytest.raises(
        RuntimeError,
        match=rf"cut\.state: cannot restore this session state: truncated session "
        rf"state file \({cut} bytes",
    ):
        v.s.load_state(tmp_path / "cut.state")
    assert v.unchanged(toks)


def test_flipped_bytes_and_trailing_bytes_are_refused(model, saved, toks, tmp_path):
    _, data, _ = saved
    v = Victim(model, toks)
    rng = np.random.default_rng(0)
    offsets = [HEADER_BYTES, len(data) // 3, len(data) - 9, *rng.integers(HEADER_BYTES, len(data) - 8, 5)]
    for off in offsets:
        b = bytearray(data)
        b[int(off)] ^= 0x10
        (tmp_path / "flip.state").write_bytes(bytes(b))
        with pytest.raises(RuntimeError, match=r"flip\.state: .*checksum mismatch, the file is corrupt"):
            v.s.load_state(tmp_path / "flip.state")
    (tmp_path / "long.state").write_bytes(data + b"\0")
    with pytest.raises(RuntimeError, match=r"trailing bytes after the state"):
        v.s.load_state(tmp_path / "long.state")
    assert v.unchanged(toks)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pos": -1}, r"holds -1 tokens"),
        ({"pos": 1 << 62}, r"more than this session's ctx 512"),
        ({"pos": 132}, r"corrupt header \(payload of \d+ bytes, \d+ expected for 132 tokens\)"),
        ({"payload": 1 << 63}, r"corrupt header \(payload of 9223372036854775808 bytes"),
        ({"mtp_pos": 3}, r"corrupt header \(mtp_pos 3, pos 131\)"),
        ({"mtp": 1}, r"saved with MTP; create the session with the same mtp setting"),
        ({"kv_dtype": 77}, r"saved with kv_dtype 'unknown'"),
        ({"n_layers": 1 << 40}, r"n_layers 1099511627776, this model has 5"),
        ({"fingerprint": 1}, r"another model \(weights fingerprint 1,"),
        ({"version": 1}, r"format version 1, this build reads version 2; save the state again"),
    ],
)
def test_forged_headers_are_refused_by_validation(model, saved, toks, tmp_path, fields, message):
    """Header edits with a valid checksum: the loader's own checks must catch them before any allocation."""
    _, data, _ = saved
    (tmp_path / "forged.state").write_bytes(forge(data, **fields))
    v = Victim(model, toks)
    with pytest.raises(RuntimeError, match=message):
        v.s.load_state(tmp_path / "forged.state")
    assert v.unchanged(toks)


def test_not_a_state_file(model, paths, toks, tmp_path):
    v = Victim(model, toks)
    with pytest.raises(RuntimeError, match=r"a\.gguf: cannot restore this session state: not a dsv4 session state"):
        v.s.load_state(paths["a"])
    with pytest.raises(RuntimeError, match=r"absent\.state: cannot open session state \(No such file"):
        v.s.load_state(tmp_path / "absent.state")
    with pytest.raises(RuntimeError, match=r"_file0: cannot read session state \(not a regular file\)"):
        v.s.load_state(tmp_path)
    assert v.unchanged(toks)


def test_failed_save_leaves_nothing(model, toks, tmp_path):
    s = model.session(ctx=64)
    s.prefill(toks[:10])
    with pytest.raises(RuntimeError, match=r"missing/x\.state: cannot write session state"):
        s.save(tmp_path / "missing" / "x.state")
    (tmp_path / "dir.state").mkdir()
    with pytest.raises(RuntimeError, match=r"dir\.state: cannot move the session file into place"):
        s.save(tmp_path / "dir.state")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.state"]  # no temp file left behind
    assert s.pos == 10
