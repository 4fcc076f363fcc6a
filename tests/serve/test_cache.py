"""Prompt cache: a 5-turn conversation prefills only each turn's new tokens (counted in usage and /stats),
from the slot's live state (rollback into the previous turn's generation) or from a state file when
another conversation took the slot, and every logprob equals a cold in-process run's.

The runtime is bit-exact across prefill chunking, decode steps and state restores, so equality is exact
(stricter than the parity tolerance).  Turns are long enough that the restored states are cut mid-block
of both compressed caches (m=4, m=128) and the new tokens cross m=128 block edges."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from support.serving import NAME, chat_tokens, greedy, start_server

openai = pytest.importorskip("openai")

TEXT = (
    "Compressed attention keeps one entry per block of tokens; the sliding window keeps the most recent rows. "
    "A prompt cache must cut only where both are exact."
)
N_GEN = 6


@pytest.fixture(scope="module")
def server(serve_gguf):
    srv = start_server(serve_gguf, parallel=1, ctx=2048)
    yield srv
    srv.stop()


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _cold_logprobs(model, tokens: list[int], n: int) -> list[list[float]]:
    """Top-20 logprobs of each greedy step of a cold session."""
    s = model.session(ctx=len(tokens) + n + 1)
    logits, out = s.prefill(tokens), []
    for _ in range(n):
        lp = _log_softmax(logits)
        out.append(sorted(lp.tolist(), reverse=True)[:20])
        t = int(np.argmax(logits))
        if t == model.tokenizer.eos_id:
            break
        logits = s.decode(t)
    return out


def test_five_turns_prefill_only_new_tokens(server, ref_model):
    client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    messages = [{"role": "system", "content": "You answer about caches."}]
    prompts, cached, snapshot_turns = [], [], {3, 5}
    try:
        for k in range(1, 6):
            messages.append({"role": "user", "content": f"Question {k}: {TEXT * (1 + k % 2)}"})
            r = client.chat.completions.create(
                model=NAME, messages=messages, max_tokens=N_GEN, temperature=0, logprobs=True, top_logprobs=20
            )
            p = chat_tokens(ref_model, messages)
            prompts.append(p)
            cached.append(r.usage.prompt_tokens_details.cached_tokens)
            assert r.usage.prompt_tokens == len(p)
            got = [[t.logprob for t in step.top_logprobs] for step in r.choices[0].logprobs.content]
            assert got == _cold_logprobs(ref_model, p, N_GEN)[: len(got)], f"turn {k}: logprobs differ from a cold run"
            # the client replays a scripted answer (starting with a space, so the old prompt's tokens stay a
            # prefix of the new prompt's under the byte-level test vocabulary)
            messages.append({"role": "assistant", "content": f" Answer {k}: noted."})
            if k + 1 in snapshot_turns:  # another conversation takes the only slot
                client.chat.completions.create(
                    model=NAME, messages=[{"role": "user", "content": "Unrelated"}], max_tokens=2, temperature=0
                )
    finally:
        client.close()
    assert cached[0] == 0
    for k in range(2, 6):
        prev, p = prompts[k - 2], prompts[k - 1]
        assert p[: len(prev)] == prev  # the test's precondition: the conversation extends the previous prompt
        if k in snapshot_turns:  # restored from the state file written at the previous prompt's end
            want = len(prev) - 1
        else:  # the live state: previous prompt + the tokens generated and fed, rolled back to the common prefix
            held = prev + greedy(ref_model, prev, N_GEN)[:-1]
            want = min(
                next((i for i, (a, b) in enumerate(zip(held, p, strict=False)) if a != b), len(held)), len(p) - 1
            )
        assert want >= len(prev) - 1
        assert cached[k - 1] == want, f"turn {k}: {cached[k - 1]} cached tokens, expected {want}"
    # the cuts are mid-block for m=4 and m=128, and the new tokens cross m=128 block edges
    assert any(c % 4 for c in cached[1:]) and all(c % 128 for c in cached[1:])
    crossing = [k for k in range(2, 6) if cached[k - 1] // 128 < (len(prompts[k - 1]) - 1) // 128]
    assert len(crossing) >= 2, (cached, [len(p) for p in prompts])
    stats = httpx.get(server.url + "/stats").json()
    assert (
        stats["cached_tokens"] >= sum(cached)
        and stats["prefilled_tokens"] + stats["cached_tokens"] == stats["prompt_tokens"]
    )


def test_echo_logprobs_bypass_the_cache(server, ref_model):
    """Prompt logprobs need every position's logits: such a request prefills the whole prompt."""
    client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    try:
        a = client.completions.create(model=NAME, prompt=TEXT, max_tokens=1, temperature=0)
        b = client.completions.create(model=NAME, prompt=TEXT, max_tokens=1, temperature=0, echo=True, logprobs=0)
    finally:
        client.close()
    n = len(ref_model.encode(TEXT))
    assert a.usage.prompt_tokens == b.usage.prompt_tokens == n
    assert b.usage.prompt_tokens_details.cached_tokens == 0 and None not in b.choices[0].logprobs.token_logprobs[1:]
