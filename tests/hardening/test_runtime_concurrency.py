"""Concurrent sessions on one loaded model (issue 11), from Python: threads run chunked prefill, save ->
restore and decode on their own sessions at once (the GIL is released in the math), and every logit equals
the same work done one session after another.  One session used by two threads refuses the second call with
a clear error instead of interleaving tokens.  The C++-level race check is test_runtime_threads.py (TSan)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hardening.runtime_support import tiny_gguf

from dsv4_gguf import _C, runtime

PREFILL, DECODE = 40, 6
KV = ("f32", "bf16", "fp8", "f32")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return runtime.load(tiny_gguf(tmp_path_factory.mktemp("rt_conc") / "a.gguf", variant="MXFP4_MOE"), threads=2)


def _work(model, toks: np.ndarray, kv: str, state) -> list[np.ndarray]:
    """chunked prefill (all logits), save, restore into a new session, decode one token at a time"""
    s = model.session(ctx=64, kv_dtype=kv)
    out = [s.prefill(toks[:PREFILL], all_logits=True, chunk_size=16)]
    s.save(state)
    r = model.session(ctx=64, kv_dtype=kv)
    r.load_state(state)
    out += [r.decode(int(t)) for t in toks[PREFILL:]]
    return out


def test_threads_on_one_model_equal_sequential(model, tmp_path):
    seqs = [np.random.default_rng(i).integers(0, 1024, PREFILL + DECODE) for i in range(len(KV))]
    ref = [_work(model, seqs[i], KV[i], tmp_path / f"seq{i}.state") for i in range(len(KV))]
    for rnd in range(2):
        got = _run_threads(
            [lambda i=i, rnd=rnd: _work(model, seqs[i], KV[i], tmp_path / f"r{rnd}_{i}.state") for i in range(len(KV))]
            + [lambda: _refused_calls(model, tmp_path)]
        )
        assert got.pop() == 30, "refused calls on a neighbouring session"
        for i, g in enumerate(got):
            assert isinstance(g, list), f"round {rnd} session {i}: {g!r}"
            assert len(g) == len(ref[i]) and all(np.array_equal(a, b) for a, b in zip(g, ref[i], strict=True)), (
                f"round {rnd} session {i} ({KV[i]}): logits differ from the sequential run"
            )


def _refused_calls(model, tmp_path) -> int:
    """Meanwhile, on another session: calls that fail (bad ids, overflow, a foreign state) must not
    disturb the others."""
    s = model.session(ctx=8)
    (tmp_path / "junk.state").write_bytes(b"DSV4SES1" + bytes(200))
    n = 0
    for _ in range(10):
        for call, err in (
            (lambda: s._s.forward(np.array([0, 5000], dtype=np.int32)), IndexError),
            (lambda: s._s.forward(np.zeros(9, dtype=np.int32)), ValueError),
            (lambda: s.load_state(tmp_path / "junk.state"), RuntimeError),
        ):
            with pytest.raises(err):
                call()
            n += 1
    return n


def _run_threads(fns: list) -> list[object]:
    """Start every fn on its own thread at once (a barrier); their results or exceptions."""
    got: list[object] = [None] * len(fns)
    start = threading.Barrier(len(fns))

    def run(i: int) -> None:
        start.wait()
        try:
            got[i] = fns[i]()
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            got[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a session thread hung"
    return got


def _while_running(fn, probe, error: type[Exception] = RuntimeError) -> tuple[object, int, int]:
    """Run fn() on a thread; call probe() on this thread until it finishes.  -> (fn's result, busy, calls)."""
    box: list[object] = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()
    busy = calls = 0
    while t.is_alive():
        calls += 1
        try:
            probe()
        except error as e:
            assert "in use by another thread" in str(e) and "give each thread its own session" in str(e)
            busy += 1
    t.join()
    return box[0], busy, calls


def test_one_session_on_two_threads_is_refused(model):
    toks = np.random.default_rng(5).integers(0, 1024, 600)
    ref = model.session(ctx=600).prefill(toks, all_logits=True)

    s = model.session(ctx=600)  # the facade: the lock spans a whole multi-chunk prefill

    def decode_one() -> None:
        if s.pos == 0:  # not started yet: a decode now would come first and be accepted
            return
        try:
            s.decode(1)
        except ValueError as e:  # the prefill finished in the meantime and filled the context
            assert "context overflow" in str(e)

    out, busy, calls = _while_running(lambda: s.prefill(toks, all_logits=True, chunk_size=50), decode_one)
    assert busy > 0, f"no refusal in {calls} calls"
    assert s.pos == 600 and np.array_equal(out, ref)

    raw = model.session(ctx=600)._s  # the extension's own guard, and accessors that stay readable meanwhile
    seen: list[int] = []

    def probe() -> None:
        seen.append(raw.pos + raw.ctx + raw.mtp_pending + int(raw.kv_bytes_total() > 0))
        raw.take_taps()

    out, busy, calls = _while_running(lambda: raw.forward(toks.astype(np.int32), True), probe, _C.SessionBusyError)
    assert busy > 0, f"no refusal in {calls} calls"
    assert np.array_equal(out, ref) and raw.pos == 600 and set(seen) <= {601, 1201}
    raw.reset()  # idle again: accepted
    assert raw.pos == 0


@pytest.fixture(scope="module")
def text_model(tiny_ckpt, tmp_path_factory):
    from dsv4_gguf.cli import main

    out = tmp_path_factory.mktemp("rt_conc_text") / "tiny.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", "Q8_0", "--no-mtp"]) == 0
    return runtime.load(out, threads=2)


def test_generate_on_threads(text_model):
    """generate() from several threads on one model: each text equals its sequential run, and last_stats
    is per thread (the tokenizer is built once, on first use, by whichever thread comes first)."""
    prompts = ["Hello world", "def f(x):", "深度求索", "1 2 3 4"]

    def gen(p: str) -> tuple[str, int, list[int]]:
        text = "".join(text_model.generate(p, max_tokens=6, temperature=0.0))
        st = text_model.last_stats
        return text, st.prompt_tokens, st.tokens

    got = _run_threads([lambda p=p: gen(p) for p in prompts])
    ref = [gen(p) for p in prompts]
    assert got == ref
    assert [r[1] for r in ref] == [len(text_model.encode(p)) for p in prompts]
