"""The serving engine: one model, N slots (runtime sessions), one worker thread that runs every forward pass,
and the prompt cache.  No HTTP here: the API modules submit a ``Job`` and read its events.

Slots advance together, round by round: a slot still prefilling runs one prefill chunk, and every slot that is
generating samples its next token; then the generating slots are decoded in ONE forward
(``runtime.decode_batch``: each weight matrix streamed once per step for all of them, each slot's logits the
bits of a lone decode).  A ``Session`` is not thread-safe, so only the worker touches sessions.

Per-token Python work is kept out of the step: the greedy choices of a batched step are one ``argmax`` over
its ``[n, V]`` logits (the same ids as each row's own argmax), and the round's events go to each event loop
in one hand-over (one wake-up of the loop per round, not one per token).
"""

from __future__ import annotations

import asyncio
import collections
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime import Model, Session, decode_batch
from ..speculative import sample

__all__ = ["Sampling", "Job", "TokenEvent", "DoneEvent", "Engine", "EngineStats"]

PREFILL_CHUNK = 512  # prompt tokens one slot prefills per round, so a long prompt does not stall the others
MAX_AHEAD = 32  # events a job may have posted and its reader not yet taken: a slow or gone client pauses its slot


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class TokenEvent:
    token: int
    logprob: float | None = None  # of the chosen token, when the job asked for logprobs
    top: list[tuple[int, float]] | None = None  # the top-n alternatives, when asked


@dataclass
class DoneEvent:
    reason: str  # "stop" (an end token), "length" (max_tokens or the context), "cancelled", "error"
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens restored from the prompt cache instead of prefilled
    generated_tokens: int = 0
    prompt_logprobs: list[float | None] | None = None  # echo: logprob of each prompt token (first: None)
    prompt_top: list[list[tuple[int, float]] | None] | None = None  # echo: top-n alternatives of each
    prefill_s: float = 0.0
    decode_s: float = 0.0
    error: str = ""


@dataclass
class Job:
    """One generation request in token space.  ``logprobs``: None, or the number of top alternatives to
    report with each generated token (0 = only the chosen one).  ``echo_logprobs``: also score the prompt
    (needs the logits of every prompt position, so the prompt cache is not used for this job)."""

    tokens: list[int]
    max_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    stop_ids: frozenset[int] = frozenset()
    logprobs: int | None = None
    echo_logprobs: bool = False
    # hand the generated tokens to the reader at the end, with the DoneEvent, instead of one round at a time: for
    # a non-streamed answer nobody reads them earlier, and each round's hand-over wakes the event loop, which
    # competes with the decode threads for the cores (set it only when the reader cannot stop the job early)
    at_end: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    posted: int = 0  # events the worker posted (written by the worker only)
    taken: int = 0  # events the reader took (written by the reader only)

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass
class EngineStats:
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    cancelled: int = 0
    peak_busy: int = 0  # most slots generating at once
    batched_steps: int = 0  # decode forwards that served more than one slot
    peak_batch: int = 0  # most slots decoded in one forward
    folded_prompt_tokens: int = 0  # prompts whose last token went through the batched decode


class _Mailbox:
    """Where a job's events go: its reader's queue on its event loop (only that loop's thread touches it)."""

    __slots__ = ("loop", "queue")

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[TokenEvent | DoneEvent]):
        self.loop, self.queue = loop, queue


def _deliver(items: list[tuple[_Mailbox, TokenEvent | DoneEvent]]) -> None:
    """Run on the event loop: hand over one round's events, in the order they were posted."""
    for box, ev in items:
        box.queue.put_nowait(ev)


class _Slot:
    """A session with the exact token list it holds (``held[i]`` is at position i), and the running job."""

    def __init__(self, index: int, session: Session):
        self.index, self.session = index, session
        self.held: list[int] = []
        self.job: Job | None = None
        self.post: _Mailbox | None = None  # the job's reader
        self.last_used = 0.0
        # per-job state
        self.todo: list[int] = []
        self.logits: np.ndarray | None = None
        self.argmax = -1  # argmax of ``logits`` when the batched step computed it for all rows at once, else -1
        self.rng: np.random.Generator | None = None
        self.done = DoneEvent(reason="")
        self.held_events: list[TokenEvent] = []  # an ``at_end`` job's tokens, posted with its DoneEvent
        self.prompt_lp: list[float] = []
        self.prompt_top: list[list[tuple[int, float]]] = []
        self.t0 = 0.0


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _top(lp: np.ndarray, n: int) -> list[tuple[int, float]]:
    """The ``n`` most likely ids, by decreasing logprob then increasing id (the eval harness's order)."""
    n = min(n, lp.size)
    if n <= 0:
        return []
    kth = np.partition(lp, lp.size - n)[lp.size - n]
    cand = np.flatnonzero(lp >= kth)  # every id tied at the boundary is a candidate
    order = cand[np.lexsort((cand, -lp[cand]))][:n]
    return [(int(i), float(lp[i])) for i in order]


class _Snapshots:
    """Session state files of conversations that left a slot (cut before their last prompt token), newest
    last, at most ``limit``; any slot can load any of them (same model, ctx and KV dtype)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._dir = tempfile.TemporaryDirectory(prefix="dsv4-serve-cache-") if limit > 0 else None
        self._files: collections.OrderedDict[tuple[int, ...], Path] = collections.OrderedDict()
        self._n = 0

    def longest_prefix(self, tokens: Sequence[int], limit: int) -> tuple[int, ...] | None:
        best: tuple[int, ...] | None = None
        for key in self._files:
            if len(key) <= limit and (best is None or len(key) > len(best)) and tuple(tokens[: len(key)]) == key:
                best = key
        return best

    def has(self, key: tuple[int, ...]) -> bool:
        return key in self._files

    def path(self, key: tuple[int, ...]) -> Path:
        self._files.move_to_end(key)
        return self._files[key]

    def add(self, key: tuple[int, ...], session: Session) -> None:
        if self._dir is None or not key or key in self._files:
            return
        self._n += 1
        path = Path(self._dir.name) / f"state-{self._n}.bin"
        session.save(path)  # atomic (temp file + rename)
        self._files[key] = path
        while len(self._files) > self.limit:
            _, old = self._files.popitem(last=False)
            old.unlink(missing_ok=True)

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class Engine:
    """``parallel`` slots of ``ctx`` tokens on one model; ``cache_snapshots`` state files kept for the prompt
    cache (0: only each slot's live state is reused).  ``start()`` runs the worker thread."""

    def __init__(
        self, model: Model, parallel: int = 1, ctx: int = 8192, kv_dtype: str = "f32", cache_snapshots: int = 8
    ):
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1 slot, got {parallel}")
        self.model, self.ctx, self.kv_dtype = model, ctx, kv_dtype
        self.slots = [_Slot(i, model.session(ctx=ctx, kv_dtype=kv_dtype)) for i in range(parallel)]
        self.stats = EngineStats()
        # CUDA sessions have no undo journal (nor state files) yet: their cache is the live state only
        self._journal = model.device == "cpu"
        self._snapshots = _Snapshots(cache_snapshots if self._journal else 0)
        self._waiting: collections.deque[tuple[Job, _Mailbox]] = collections.deque()
        self._outbox: list[tuple[_Mailbox, TokenEvent | DoneEvent]] = []  # this round's events (worker only)
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    # ---- asyncio side -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dsv4-serve-engine", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._snapshots.close()

    def busy_slots(self) -> int:
        return sum(s.job is not None for s in self.slots)

    def queued(self) -> int:
        return len(self._waiting)

    def cancel(self, job: Job) -> None:
        """Stop ``job`` (from any thread): its slot is freed at the worker's next round."""
        job.cancel()
        with self._cond:
            self._cond.notify_all()

    async def stream(self, job: Job) -> AsyncIterator[TokenEvent | DoneEvent]:
        """Submit ``job`` and yield its events; leaving the iteration early (a client that disconnected)
        cancels the job, which frees its slot at the next round."""
        queue: asyncio.Queue[TokenEvent | DoneEvent] = asyncio.Queue()
        box = _Mailbox(asyncio.get_running_loop(), queue)
        with self._cond:
            if self._stop:
                raise RuntimeError("the engine is shut down")
            self._waiting.append((job, box))
            self._cond.notify_all()
        finished = False
        try:
            while True:
                ev = await queue.get()
                job.taken += 1
                yield ev
                if isinstance(ev, DoneEvent):
                    finished = True
                    return
        finally:
            if not finished:
                self.cancel(job)

    # ---- worker -------------------------------------------------------------------------------------

    def _post(self, box: _Mailbox, ev: TokenEvent | DoneEvent) -> None:
        self._outbox.append((box, ev))

    def _flush(self) -> None:
        """Hand the events posted so far to their event loops: one ``call_soon_threadsafe`` per loop."""
        if not self._outbox:
            return
        items, self._outbox = self._outbox, []
        loops: dict[asyncio.AbstractEventLoop, list[tuple[_Mailbox, TokenEvent | DoneEvent]]] = {}
        for item in items:
            loops.setdefault(item[0].loop, []).append(item)
        for loop, batch in loops.items():
            try:
                loop.call_soon_threadsafe(_deliver, batch)
            except RuntimeError:  # that loop is closed: nobody is left to read these events
                pass

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._waiting and all(s.job is None for s in self.slots):
                    self._cond.wait()
                if self._stop:
                    for s in self.slots:
                        if s.job is not None:
                            self._finish(s, "cancelled")
                    while self._waiting:
                        _, box = self._waiting.popleft()
                        self._post(box, DoneEvent(reason="cancelled"))
                    self._flush()
                    return
                admitted = self._admit()
            for s in admitted:
                self._guarded(s, self._begin)
            stepped = False
            feed: list[tuple[_Slot, int]] = []  # generating slots and the token each feeds next
            for s in self.slots:
                if s.job is None:
                    continue
                if s.job.cancelled.is_set():
                    self._finish(s, "cancelled")
                    continue
                if s.job.posted - s.job.taken > MAX_AHEAD and not s.job.at_end:
                    continue  # its reader is behind: do not generate further ahead of it
                tok = self._guarded(s, self._step)
                if tok is not None:
                    feed.append((s, tok))
                stepped = True
            self._flush()  # the tokens go out before the step that feeds them, which runs while they are sent
            if feed:
                self._decode(feed)
                self._flush()  # a slot that failed to decode
            if not stepped and any(s.job is not None for s in self.slots):
                with self._cond:
                    self._cond.wait(timeout=0.002)

    def _guarded(self, s: _Slot, fn: Any) -> Any:
        try:
            return fn(s)
        except Exception as e:  # noqa: BLE001 - one failing request must not stop the server
            s.done.error = f"{type(e).__name__}: {e}"
            s.session.reset()
            s.held = []
            self._finish(s, "error")
            return None

    def _decode(self, feed: list[tuple[_Slot, int]]) -> None:
        """Feed each generating slot its sampled token: one batched forward for all of them (CPU sessions), else
        one decode per slot; a batch that fails is retried slot by slot, so that only the failing one errors."""
        if len(feed) > 1 and self._journal:
            try:
                rows = decode_batch([s.session for s, _ in feed], [tok for _, tok in feed])
            except Exception:  # noqa: BLE001 - retried one by one below, which reports the failing slot
                rows = None
            if rows is not None:
                # every slot's next greedy choice at once: argmax along axis 1 gives each row's own argmax
                best = rows.argmax(axis=1).tolist()
                for (s, tok), row, am in zip(feed, rows, best, strict=True):
                    s.logits, s.argmax = row, am
                    s.held.append(tok)
                self.stats.batched_steps += 1
                self.stats.peak_batch = max(self.stats.peak_batch, len(feed))
                return
        for s, tok in feed:
            self._guarded(s, lambda s, tok=tok: self._feed_one(s, tok))

    @staticmethod
    def _feed_one(s: _Slot, tok: int) -> None:
        s.logits, s.argmax = s.session.decode(tok), -1
        s.held.append(tok)

    def _admit(self) -> list[_Slot]:
        """Give waiting jobs free slots (FIFO): the slot whose held tokens share the longest prefix with
        the job's prompt, else the least recently used one.  Called with the lock held."""
        admitted = []
        while self._waiting:
            free = [s for s in self.slots if s.job is None]
            if not free:
                break
            job, box = self._waiting.popleft()
            if job.cancelled.is_set():
                self._post(box, DoneEvent(reason="cancelled"))
                self.stats.cancelled += 1
                continue
            best = max(free, key=lambda s: (_lcp(s.held, job.tokens), -s.last_used))
            best.job, best.post = job, box
            admitted.append(best)
            self.stats.peak_busy = max(self.stats.peak_busy, self.busy_slots())
        return admitted

    def _begin(self, s: _Slot) -> None:
        job = s.job
        assert job is not None
        s.done = DoneEvent(reason="", prompt_tokens=len(job.tokens))
        s.rng = np.random.default_rng(job.sampling.seed)
        s.prompt_lp, s.prompt_top, s.logits, s.argmax, s.t0 = [], [], None, -1, time.perf_counter()
        if job.echo_logprobs:
            self._evict(s)
            reuse = 0
        else:
            reuse = self._restore(s, job.tokens)
        if reuse == 0 and s.held:
            s.session.reset()
            s.held = []
        s.todo = list(job.tokens[reuse:])
        s.done.cached_tokens = reuse
        st = self.stats
        st.requests += 1
        st.prompt_tokens += len(job.tokens)
        st.cached_tokens += reuse
        st.prefilled_tokens += len(s.todo)

    def _restore(self, s: _Slot, tokens: list[int]) -> int:
        """Put the slot in the state of the longest prefix of ``tokens`` (at most all but the last token,
        whose logits must be computed) that can be restored exactly: the slot's own state, a rollback to
        its checkpoint range, or a snapshot file.  Returns the number of tokens reused."""
        limit = len(tokens) - 1
        live = min(_lcp(s.held, tokens), limit)
        ck = s.session.checkpoint_pos
        if live < len(s.held) and not (0 <= ck <= live):
            live = 0  # cutting there is not exact: neither the whole state nor within the undo journal
        key = self._snapshots.longest_prefix(tokens, limit)
        if key is not None and len(key) > live:
            self._evict(s)
            s.session.load_state(self._snapshots.path(key))
            s.held = list(key)
            return len(key)
        if live == 0:
            self._evict(s)
        elif live < len(s.held):
            s.session.rollback(live)
            del s.held[live:]
        return live

    def _evict(self, s: _Slot) -> None:
        """Before the slot's state is replaced, keep its conversation as a state file: rolled back to its
        checkpoint (the point before its last prompt's last token, where the next turn will extend it), so
        only a slot that changes conversation writes one."""
        ck = s.session.checkpoint_pos
        if ck <= 0 or self._snapshots.limit <= 0 or self._snapshots.has(tuple(s.held[:ck])):
            return
        s.session.rollback(ck)
        del s.held[ck:]
        self._snapshots.add(tuple(s.held), s.session)

    def _step(self, s: _Slot) -> int | None:
        """One round of a slot: a prefill chunk, or the next token sampled and posted.  Returns the token the
        slot must be fed (the round's batched decode does that), None when there is none."""
        job = s.job
        assert job is not None
        if s.todo:
            if len(s.todo) == 1 and self._journal and not job.echo_logprobs:
                # the prompt's last token is one decode step (the same bits as a one-token prefill): it joins
                # the round's batched decode, whose logits row is then this slot's first sampling input
                if s.session.checkpoint_pos != s.session.pos:
                    s.session.checkpoint()
                self.stats.folded_prompt_tokens += 1
                return s.todo.pop()
            self._prefill_step(s, job)
            return None
        if s.done.prefill_s == 0.0:
            s.done.prefill_s = time.perf_counter() - s.t0
            s.t0 = time.perf_counter()
        if s.done.generated_tokens >= job.max_tokens:
            self._finish(s, "length")
            return None
        assert s.logits is not None and s.rng is not None
        sp = job.sampling
        if sp.temperature <= 0 and s.argmax >= 0:
            tok = s.argmax  # sample()'s greedy choice, computed for the whole batch (_decode)
        else:
            tok = sample(s.logits, sp.temperature, sp.top_p, s.rng)
        s.argmax = -1
        ev = TokenEvent(tok)
        if job.logprobs is not None:
            lp = _log_softmax(s.logits)
            ev.logprob, ev.top = float(lp[tok]), _top(lp, job.logprobs)
        s.done.generated_tokens += 1
        self.stats.generated_tokens += 1
        job.posted += 1
        assert s.post is not None
        if job.at_end:
            s.held_events.append(ev)
        else:
            self._post(s.post, ev)
        if tok in job.stop_ids:
            self._finish(s, "stop")
        elif s.done.generated_tokens >= job.max_tokens or s.session.pos >= s.session.ctx:
            self._finish(s, "length")
        else:
            return tok
        return None

    def _prefill_step(self, s: _Slot, job: Job) -> None:
        """Prefill up to PREFILL_CHUNK tokens; the last prompt token goes alone, after a checkpoint at the
        token before it: the next turn of a conversation shares that prefix (in thinking mode even the
        prompt's last token differs), the undo journal lets a later request roll back to any point from
        there on, and ``_evict`` saves the state at that point when the slot changes conversation."""
        if self._journal and len(s.todo) == 1 and s.session.checkpoint_pos != s.session.pos:
            s.session.checkpoint()
        chunk = s.todo[: min(PREFILL_CHUNK, len(s.todo) - 1)] if len(s.todo) > 1 else s.todo[:1]
        start = len(s.held)
        out = s.session.prefill(chunk, all_logits=job.echo_logprobs)
        del s.todo[: len(chunk)]
        s.held.extend(chunk)
        if job.echo_logprobs:  # row i predicts prompt token start + i + 1; kept per token, not [T, V]
            n, toks = job.logprobs or 0, job.tokens
            for i, row in enumerate(out):
                if start + i + 1 < len(toks):
                    lp = _log_softmax(row)
                    s.prompt_lp.append(float(lp[toks[start + i + 1]]))
                    s.prompt_top.append(_top(lp, n))
        if not s.todo:
            s.logits, s.argmax = (out[-1] if job.echo_logprobs else out), -1

    def _finish(self, s: _Slot, reason: str) -> None:
        job = s.job
        assert job is not None
        d = s.done
        d.reason = reason
        if d.prefill_s == 0.0:
            d.prefill_s = time.perf_counter() - s.t0
        else:
            d.decode_s = time.perf_counter() - s.t0
        if job.echo_logprobs and reason != "error":
            d.prompt_logprobs = [None, *s.prompt_lp]
            d.prompt_top = [None, *s.prompt_top]
        if reason == "cancelled":
            self.stats.cancelled += 1
        s.job, s.todo, s.logits, s.argmax = None, [], None, -1
        s.last_used = time.monotonic()
        box, s.post = s.post, None
        assert box is not None
        for ev in s.held_events:
            self._post(box, ev)
        s.held_events = []
        self._post(box, d)
