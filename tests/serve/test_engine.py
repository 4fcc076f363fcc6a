"""The serve engine without HTTP: a job marked ``at_end`` (what the handlers set for a non-streamed answer without
stop strings) is handed its tokens with its DoneEvent, not round by round, and is not held to the read-ahead
limit a streamed job is (its reader takes nothing before the end)."""

from __future__ import annotations

import asyncio

from dsv4_gguf import runtime
from dsv4_gguf.serve.engine import MAX_AHEAD, DoneEvent, Engine, Job, Sampling, TokenEvent


def test_at_end_job_gets_its_tokens_with_done(serve_gguf):
    model = runtime.load(serve_gguf, threads=1)
    eng = Engine(model, parallel=1, ctx=256, cache_snapshots=0)
    eng.start()
    n = MAX_AHEAD + 16

    async def run(at_end: bool) -> tuple[list[int], int, DoneEvent]:
        job = Job(list(range(5, 25)), max_tokens=n, sampling=Sampling(temperature=0.0), at_end=at_end)
        toks: list[int] = []
        posted_at_first = -1
        done = None
        async for ev in eng.stream(job):
            if isinstance(ev, TokenEvent):
                if posted_at_first < 0:
                    posted_at_first = job.posted  # how many the worker had generated when the first arrived
                toks.append(ev.token)
            else:
                done = ev
        assert done is not None
        return toks, posted_at_first, done

    try:
        late = asyncio.run(asyncio.wait_for(run(True), 120))
        each = asyncio.run(asyncio.wait_for(run(False), 120))
    finally:
        eng.close()
    assert late[2].reason == each[2].reason == "length"
    assert late[0] == each[0] and len(late[0]) == n  # the same greedy tokens, all of them
    assert late[1] == n  # every token was generated before the first reached the reader
    assert each[1] <= MAX_AHEAD + 1  # round by round: a streamed job is never more than MAX_AHEAD ahead
