"""Parallel slots: two concurrent clients each get exactly their own greedy tokens while both slots run, decoded
together in one batched forward per step;
with one slot, further requests queue; a client that disconnects (streaming, or a non-streamed request
that times out) frees its slot and its generation stops."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from support.serving import NAME, chat_tokens, greedy, start_server, text_of

openai = pytest.importorskip("openai")

LONG_GEN = 1950


@pytest.fixture(scope="module")
def server(serve_gguf):
    srv = start_server(serve_gguf, parallel=2, ctx=2048)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def single(serve_gguf):
    srv = start_server(serve_gguf, parallel=1, ctx=2048)
    yield srv
    srv.stop()


def _run_clients(url: str, prompts: list[str], n: int) -> list[str]:
    out: list[str] = [""] * len(prompts)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(prompts))

    def worker(i: int) -> None:
        try:
            with openai.OpenAI(base_url=url, api_key="unused", max_retries=0) as c:
                barrier.wait()
                stream = c.chat.completions.create(
                    model=NAME,
                    messages=[{"role": "user", "content": prompts[i]}],
                    max_tokens=n,
                    temperature=0,
                    stream=True,
                )
                out[i] = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return out


def test_two_clients_do_not_mix(server, ref_model):
    prompts = ["First client: tell a story about rivers.", "Second client: list some prime numbers."]
    got = _run_clients(server.v1, prompts, 200)
    for p, text in zip(prompts, got, strict=True):
        want = greedy(ref_model, chat_tokens(ref_model, [{"role": "user", "content": p}]), 200)
        assert text == text_of(ref_model, want)
    assert got[0] != got[1]
    st = httpx.get(server.url + "/stats").json()
    assert st["peak_busy"] == 2  # both slots generated at once
    # ... decoded in one forward per step (runtime.decode_batch), each with a lone decode's logits (above)
    assert st["peak_batch"] == 2 and st["batched_steps"] > 50, st


def test_requests_beyond_slots_queue(single, ref_model):
    prompts = ["Queue one.", "Queue two.", "Queue three."]
    got = _run_clients(single.v1, prompts, 20)
    for p, text in zip(prompts, got, strict=True):
        assert text == text_of(
            ref_model, greedy(ref_model, chat_tokens(ref_model, [{"role": "user", "content": p}]), 20)
        )
    assert httpx.get(single.url + "/stats").json()["peak_busy"] == 1


def _wait_idle(url: str, cancelled: int) -> dict:
    deadline = time.monotonic() + 20
    while True:
        st = httpx.get(url + "/stats").json()
        if st["cancelled"] >= cancelled and st["busy_slots"] == 0:
            return st
        assert time.monotonic() < deadline, f"the slot was not freed: {st}"
        time.sleep(0.05)


def test_disconnect_frees_the_slot(single, ref_model):
    msgs = [{"role": "user", "content": "Never stop."}]
    t0 = time.perf_counter()
    want = greedy(ref_model, chat_tokens(ref_model, msgs), LONG_GEN)
    t_gen = time.perf_counter() - t0  # a lower bound of the server's time for it (same runtime, no HTTP)
    assert len(want) == LONG_GEN  # the test's precondition: uncancelled, this generation runs to max_tokens
    before = httpx.get(single.url + "/stats").json()
    body = {"model": NAME, "messages": msgs, "max_tokens": LONG_GEN, "temperature": 0, "stream": True}
    with httpx.Client(timeout=30) as c, c.stream("POST", single.v1 + "/chat/completions", json=body) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
    assert any(line.startswith("data: ") for line in got)
    st = _wait_idle(single.url, before["cancelled"] + 1)
    # the generation stopped right after the disconnect (a slot runs at most 32 events ahead of its reader)
    assert st["generated_tokens"] - before["generated_tokens"] < 200
    # a non-streamed request whose client gives up is cancelled too
    body["stream"] = False
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(single.v1 + "/chat/completions", json=body, timeout=max(0.05, t_gen / 4))
    st2 = _wait_idle(single.url, st["cancelled"] + 1)
    assert st2["generated_tokens"] - st["generated_tokens"] < LONG_GEN  # stopped before its end
    # the one slot serves the next request
    with openai.OpenAI(base_url=single.v1, api_key="unused", max_retries=0) as c:
        r2 = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=5, temperature=0)
    assert r2.choices[0].message.content == text_of(ref_model, want[:5])
