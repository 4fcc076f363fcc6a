"""Python face of the C++ runtime: load a DeepSeek-V4 GGUF, run sessions, generate text.

``model = dsv4_gguf.load(path, threads=...)``; ``session = model.session(ctx=...)``;
``session.prefill(tokens) -> logits``, ``session.decode(token) -> logits``, ``session.save(path)`` /
``session.load_state(path)``; ``decode_batch(sessions, tokens)`` decodes one token in each of several
sessions in one forward pass (weights streamed once for all of them); ``model.generate(messages_or_prompt,
...)`` streams text pieces.  The tokenizer is built from the GGUF metadata (``tokenizer.ggml.*``) with HF
``tokenizers``.  The math lives in ``csrc/runtime`` (``_C.Runtime`` / ``_C.Session``); this module owns
policy: sampling, chat prompts, timing (the ``run``/``chat`` commands are wired in ``dsv4_gguf.cli``).  The
MTP draft head is exposed as logits (``Session.mtp``, ``Session.mtp_self``); speculative decoding with it
(``generate(speculative="mtp")``) is in ``dsv4_gguf.speculative``, on ``checkpoint``/``rollback``.
``with model.override_weights({name: (qtype, data)}):`` runs the model with some weight matrices replaced in
memory (``dsv4-gguf sensitivity``: a probe without a model file).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .constants import MAX_CTX

__all__ = [
    "load",
    "decode_batch",
    "Model",
    "Session",
    "GenerationStats",
    "build_tokenizer",
]

# DeepSeek-V3/V4 pre-tokenizer (the official tokenizer.json's Split sequence before byte-level BPE).
_DSV4_SPLITS = (
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+",
)


def build_tokenizer(path: str | Path, metadata: Mapping[str, Any] | None = None) -> Any:
    """HF ``tokenizers.Tokenizer`` from a GGUF's ``tokenizer.ggml.*`` keys (BPE/gpt2 only).

    The keys come from ``metadata`` when given, else from the header of ``path`` (the first shard of a split
    set holds them) read by :class:`dsv4_gguf.gguf_io.GGUFFile`: ~0.3 s for a 129k-token vocabulary, where
    the `gguf` package's ``GGUFReader`` takes 5-10 s building a numpy view per string."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    from .gguf_io import GGUFFile

    md = metadata if metadata is not None else GGUFFile(path).metadata
    kind = md.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(
            f"{path}: tokenizer.ggml.model is {kind!r}; text I/O needs a BPE ('gpt2') vocabulary "
            f"(token ids can still be passed directly)"
        )
    tokens = md.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        raise ValueError(f"{path}: tokenizer.ggml.tokens is missing or empty; the GGUF has no usable vocabulary")
    merges = md.get("tokenizer.ggml.merges") or []
    types = md.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], fuse_unk=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in _DSV4_SPLITS]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    special = [
        AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types, strict=False) if ty in (3, 4)
    ]
    tok.add_special_tokens(special)
    tok.bos_id = int(md.get("tokenizer.ggml.bos_token_id") or 0)
    tok.eos_id = int(md.get("tokenizer.ggml.eos_token_id") or 1)
    return tok


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    tokens: list[int] = field(default_factory=list)
    stop_reason: str = ""  # "eos", "max_tokens" or "ctx" (the session's context is full)
    spec: Any = None  # speculative.SpecStats of a speculative generation

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.generated_tokens / self.decode_s if self.decode_s > 0 else 0.0


class Session:
    """One sequence: KV caches and compressor state of every layer (``_C.Session``).

    Sessions of one ``Model`` may run concurrently on different threads (the GIL is released during the
    math); one session is one sequence and raises ``RuntimeError`` (``_C.SessionBusyError``) when a second
    thread calls it while it is busy, a multi-chunk ``prefill`` included."""

    def __init__(self, model: Model, ctx: int, kv_dtype: str = "f32", mtp: bool = False):
        from . import _C

        if isinstance(ctx, bool) or not isinstance(ctx, (int, np.integer)) or not 0 < int(ctx) <= MAX_CTX:
            raise ValueError(f"ctx must be an integer in [1, {MAX_CTX}] (tokens the session can hold), got {ctx!r}")
        self.model = model
        self._busy = threading.Lock()  # spans a whole multi-chunk prefill (the C++ guard covers one call)
        if model._cuda is not None:  # CUDA backend (dsv4_gguf/cuda.py): f32 KV, no MTP yet
            if kv_dtype != "f32" or mtp:
                raise NotImplementedError(
                    "device='cuda' sessions support kv_dtype='f32' without MTP only; "
                    "use device='cpu' for bf16/fp8 KV or the MTP draft block"
                )
            self._s = _C.CudaSession(model._cuda, int(ctx))
            return
        self._s = _C.Session(model._rt, int(ctx), kv_dtype, mtp)

    @property
    def pos(self) -> int:
        return self._s.pos

    @property
    def ctx(self) -> int:
        return self._s.ctx

    def _ids(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        a = np.asarray(tokens)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"tokens must be a non-empty 1-D sequence of ids, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"tokens must be integers, got dtype {a.dtype}")
        V = self.model.vocab_size
        bad = np.flatnonzero((a < 0) | (a >= V))
        if bad.size:
            raise IndexError(f"token id {int(a[bad[0]])} at index {int(bad[0])} is outside the vocabulary [0, {V})")
        return np.ascontiguousarray(a, dtype=np.int32)

    def prefill(
        self, tokens: Sequence[int] | np.ndarray, all_logits: bool = False, chunk_size: int = 1024
    ) -> np.ndarray:
        """Consume tokens (any length that fits the context) in chunks of ``chunk_size`` (bounded
        activation memory; results are bit-identical for any chunking); logits ``[V]`` of the last token
        (``all_logits``: ``[T, V]``)."""
        ids = self._ids(tokens)
        with self._exclusive("prefill"):
            if self.pos + len(ids) > self.ctx:
                raise ValueError(
                    f"context overflow: the session holds {self.pos} tokens and {len(ids)} more "
                    f"exceed its context of {self.ctx}; create the session with a larger ctx"
                )
            step = max(1, chunk_size)
            outs = [self._s.forward(ids[i : i + step], all_logits) for i in range(0, len(ids), step)]
        return np.concatenate(outs) if all_logits else outs[-1][0]

    def _exclusive(self, what: str) -> _Exclusive:
        return _Exclusive(self._busy, what)

    def decode(self, token: int) -> np.ndarray:
        ids = self._ids([token])
        with self._exclusive("decode"):
            return self._s.forward(ids, False)[0]

    def mtp(self, next_tokens: Sequence[int] | np.ndarray, all_logits: bool = False) -> np.ndarray:
        """MTP draft logits (the release's one multi-token-prediction block, ``MTPBlock`` in the official
        ``inference/model.py``): the oldest ``len(next_tokens)`` main-model positions not yet seen by the MTP
        block, position i paired with ``next_tokens[i]`` (the token that follows it, the usual DeepSeek MTP
        shift); the draft predicts the token after that.  Needs ``model.session(..., mtp=True)``."""
        ids = self._ids(next_tokens)
        with self._exclusive("mtp"):
            out = self._s.mtp_forward(ids, all_logits)
        return out if all_logits else out[0]

    def _cpu_only(self, what: str) -> None:
        if self.model._cuda is not None:
            raise NotImplementedError(f"Session.{what}: device='cuda' sessions have no MTP block or undo journal yet")

    def checkpoint(self) -> None:
        """Start an undo journal at ``pos`` (speculative decoding): ``rollback(n)`` then returns the session
        to its first ``n`` tokens, exactly and without replay.  A later ``checkpoint`` moves it; a chunk
        longer than the attention window, ``reset`` and ``load_state`` drop it."""
        self._cpu_only("checkpoint")
        with self._exclusive("checkpoint"):
            self._s.checkpoint()

    def rollback(self, n: int) -> None:
        """Return to the first ``n`` tokens (``checkpoint_pos <= n <= pos``): window KV rows, compressor states,
        compressed-entry counts and the MTP streams not yet consumed are those after token ``n - 1``, bit for
        bit.  ``ValueError`` outside that range or without a checkpoint."""
        self._cpu_only("rollback")
        with self._exclusive("rollback"):
            self._s.rollback(int(n))

    def mtp_self(self, token: int) -> np.ndarray:
        """The MTP block applied to its own last output with ``token`` (the previous draft): the next draft's
        logits ``[V]`` (drafts 2..k of a speculative step).  Provisional: ``mtp_discard``, the next ``mtp``
        call and ``rollback`` undo these positions exactly."""
        self._cpu_only("mtp_self")
        with self._exclusive("mtp_self"):
            return self._s.mtp_self(int(token))

    def mtp_discard(self) -> None:
        self._cpu_only("mtp_discard")
        with self._exclusive("mtp_discard"):
            self._s.mtp_discard()

    @property
    def mtp_pos(self) -> int:
        """Main-model positions the MTP block has consumed (``mtp``); ``pos - mtp_pos`` wait for it."""
        return 0 if self.model._cuda is not None else self._s.mtp_pos

    @property
    def checkpoint_pos(self) -> int:
        """Position of the current checkpoint, -1 without one."""
        return -1 if self.model._cuda is not None else self._s.checkpoint_pos

    def save(self, path: str | Path) -> None:
        """Write KV + compressor state atomically (temp file + rename), tied to this model's weights
        (fingerprint), KV dtype and options, with a checksum."""
        with self._exclusive("save"):
            self._s.save(str(path))

    def load_state(self, path: str | Path) -> None:
        """Restore a state written by ``save``.  A file of another model, KV dtype, MTP setting or
        options, one too long for this session's ctx, a truncated or corrupt file: RuntimeError naming the
        file, the mismatch and the fix; the session is left unchanged."""
        with self._exclusive("load_state"):
            self._s.load(str(path))

    def reset(self) -> None:
        with self._exclusive("reset"):
            self._s.reset()

    def kv_bytes(self) -> dict[str, float]:
        """``per_token``: compressed-cache bytes per token of the storage dtype (f32, bf16, or fp8), i.e. the
        entry bytes over m for each compressed layer of ratio m, plus an indexer entry over 4 in CSA layers.
        FP8 entries: 584 B main (448 e4m3 dims, 7 E8M0 block scales, 64 bf16 RoPE dims, 1 pad byte: vLLM's
        DeepSeek-V4 FP8 KV entry size) and 132 B indexer (128 e4m3 + 4 scale bytes).  ``total``: bytes
        allocated for this session's context (window ring buffers and compressor states included)."""
        return {
            "per_token": self._s.kv_bytes_per_token(),
            "total": float(self._s.kv_bytes_total()),
            "ctx": float(self.ctx),
        }

    def set_taps(self, patterns: Sequence[str]) -> None:
        self._s.set_taps(list(patterns))

    def take_taps(self) -> dict[str, np.ndarray]:
        return dict(self._s.take_taps())


class _Exclusive:
    """Non-blocking hold of a session's lock: a second thread gets a clear error, never a wait."""

    def __init__(self, lock: threading.Lock, what: str):
        self._lock, self._what = lock, what

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(
                f"Session.{self._what}: this session is in use by another thread; a session is one "
                f"sequence, so give each thread its own session (sessions can share one model)"
            )

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def decode_batch(sessions: Sequence[Session], tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    """Decode ``tokens[i]`` in ``sessions[i]`` for every i in ONE forward pass: each weight matrix is streamed
    from memory once for the whole batch instead of once per session.  Returns f32 logits ``[n, V]``; row i
    and the state of ``sessions[i]`` afterwards are bit-identical to ``sessions[i].decode(tokens[i])`` run
    alone (the sessions may sit at different positions, use different KV dtypes, and have an undo journal
    or an MTP block: its pending streams are kept as ``decode`` keeps them).

    Everything is checked before any session changes, so a refused batch leaves every session as it was:
    ``ValueError`` for an empty batch, a length mismatch, sessions of different ``Model`` objects, a session
    given twice, a full context, or a session with taps set (taps record one sequence: decode it alone);
    ``IndexError`` for a token outside the vocabulary; ``RuntimeError`` for a session in use by another
    thread; ``TypeError`` for something not a ``Session``; ``NotImplementedError`` for ``device='cuda'``."""
    from . import _C

    ss = list(sessions)
    if not ss:
        raise ValueError("decode_batch: no sessions given")
    if not all(isinstance(s, Session) for s in ss):
        bad = next(type(s).__name__ for s in ss if not isinstance(s, Session))
        raise TypeError(f"decode_batch: sessions must be dsv4_gguf.runtime.Session objects, got a {bad}")
    model = ss[0].model
    ids = np.asarray(tokens)
    if ids.ndim != 1 or len(ids) != len(ss):
        raise ValueError(
            f"decode_batch: {len(ss)} sessions but tokens of shape {ids.shape}; give one token per session"
        )
    for i, s in enumerate(ss):
        if s.model is not model:
            raise ValueError(
                f"decode_batch: session {i} belongs to another loaded model than session 0; "
                "batch the sessions of one model together"
            )
        for j in range(i):
            if ss[j] is s:
                raise ValueError(
                    f"decode_batch: session {i} is session {j} again; a session is one sequence and takes one "
                    "token per step"
                )
    if model._cuda is not None:
        raise NotImplementedError("decode_batch: device='cuda' sessions have no batched decode yet; use device='cpu'")
    ids = ss[0]._ids(ids)
    with contextlib.ExitStack() as held:
        for s in ss:
            held.enter_context(s._exclusive("decode_batch"))
        return _C.forward_batch([s._s for s in ss], ids)


class Model:
    """A loaded GGUF (memory-mapped, validated)."""

    def __init__(
        self,
        path: str | Path,
        threads: int = 0,
        exact: bool = False,
        qat: bool = True,
        mtp: str | Path | bool | None = None,
        device: str = "cpu",
        prefetch: bool | None = None,
        draft_head: str = "q8_0",
    ):
        from . import _C
        from .cuda import parse_device, require_cuda

        cuda_index = parse_device(device)
        if cuda_index is not None:
            require_cuda(cuda_index)  # before opening the GGUF: a missing backend fails fast
        self.device = device
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such GGUF file")
        side = self.path.with_name(f"mtp-{self.path.name}")
        if mtp is True and not side.is_file():
            raise FileNotFoundError(f"{side}: no MTP sidecar next to the model (pass its path as mtp=...)")
        mtp_path = (
            "" if mtp is False else str(mtp) if isinstance(mtp, (str, Path)) else (str(side) if side.is_file() else "")
        )
        self._rt = _C.Runtime(
            str(self.path), threads=threads, exact=exact, qat=qat, mtp=mtp_path, draft_head=draft_head
        )
        self._cuda: Any = None if cuda_index is None else _C.CudaModel(self._rt, cuda_index)
        if self._cuda is None and (prefetch if prefetch is not None else _fits_in_ram(self._rt.config())):
            self._rt.prefetch()
        self.config: dict[str, Any] = self._rt.config()
        self._tokenizer: Any = None
        self._tokenizer_lock = threading.Lock()
        self._local = threading.local()  # last_stats per thread: concurrent generate() calls do not mix

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])

    @property
    def tokenizer(self) -> Any:
        with self._tokenizer_lock:  # built once even when several threads ask first
            if self._tokenizer is None:
                self._tokenizer = build_tokenizer(self.path)
        return self._tokenizer

    @property
    def last_stats(self) -> GenerationStats:
        """Counts and timings of this thread's most recent ``generate``."""
        st: GenerationStats | None = getattr(self._local, "stats", None)
        return st if st is not None else GenerationStats()

    @last_stats.setter
    def last_stats(self, st: GenerationStats) -> None:
        self._local.stats = st

    def session(self, ctx: int = 4096, kv_dtype: str = "f32", mtp: bool = False) -> Session:
        return Session(self, ctx, kv_dtype, mtp)

    def decode_batch(self, sessions: Sequence[Session], tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """``decode_batch(sessions, tokens)`` for sessions of this model (``ValueError`` for another's)."""
        if any(isinstance(s, Session) and s.model is not self for s in sessions):
            raise ValueError("decode_batch: every session must belong to this model")
        return decode_batch(sessions, tokens)

    @contextlib.contextmanager
    def override_weights(
        self, weights: Mapping[str, tuple[Any, Any]] | Iterable[tuple[str, Any, Any]]
    ) -> Iterator[None]:
        """Run the ``with`` block with weight matrices of this model replaced in memory, the file's weights back
        on exit (also on an exception).  ``weights``: ``{name: (qtype, data)}``, or ``(name, qtype, data)`` triples
        (an iterator is consumed one triple at a time and the runtime keeps its own copy, so a producer holds one
        tensor's bytes at a time); ``qtype`` a ggml type (``gguf.GGMLQuantizationType``, its id or its name),
        ``data`` the tensor's bytes in that type as a GGUF file stores them (bytes or a C-contiguous uint8 array,
        rows x row_bytes).  Any 2-D/3-D weight matrix of the main model (embedding, head, hc_*_fn, attention,
        compressor/indexer, gate, experts) can be replaced; rows and columns stay.

        Refused with ValueError naming the tensor and the reason, the model as it was before the call (overrides
        this call applied already are undone): an unknown name or a tensor that is not a weight matrix, the MTP
        block's tensors, a type the kernels do not multiply, a row length the type's block does not divide, a byte
        count other than rows x row_bytes, a ``device='cuda'`` model (CPU only).  A second ``override_weights``
        inside the first: RuntimeError.  No session of this model may run during the swap in or out
        (SessionBusyError); sessions read the new weights from their next call, so reset them (their KV rows were
        computed with the weights before).  The weights fingerprint covers the overrides: a session state saved
        inside the block does not load outside it, nor the reverse."""
        if self._rt.overridden():
            raise RuntimeError(
                f"override_weights: {len(self._rt.overridden())} weights of {self.path.name} are overridden "
                "already; nested override_weights blocks are not supported (leave the first block first)"
            )
        items = weights.items() if isinstance(weights, Mapping) else weights
        try:
            for item in items:
                name, (qtype, data) = item if isinstance(weights, Mapping) else (item[0], item[1:])
                self._rt.override_weight(name, _qtype_id(qtype), data)
                del item, data  # the runtime has its copy
            yield
        finally:
            self._rt.clear_overrides()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode_tokens(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def prompt(self, messages_or_prompt: str | Sequence[Mapping[str, Any]], thinking: str | bool = False) -> str:
        """A raw prompt string is used as is; messages are encoded with dsv4_gguf.chat (think modes:
        False/"chat", True/"high", "max")."""
        if isinstance(messages_or_prompt, str):
            return messages_or_prompt
        from .chat import encode_messages

        mode = "thinking" if thinking in (True, "high", "max", "thinking") else "chat"
        return encode_messages(
            list(messages_or_prompt), thinking_mode=mode, reasoning_effort="max" if thinking == "max" else None
        )

    def generate(
        self,
        messages_or_prompt: str | Sequence[Mapping[str, Any]],
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        thinking: str | bool = False,
        ctx: int | None = None,
        session: Session | None = None,
        speculative: str | None = None,
        draft: int | str = 1,
    ) -> Iterator[str]:
        """Stream decoded text pieces; stops at EOS, after ``max_tokens`` or when the session's context is
        full.  ``self.last_stats`` holds the token counts, prefill/decode timings and ``stop_reason``
        afterwards (per thread; several threads may generate at once, each in its own session).
        ``speculative="mtp"``: speculative decoding with the MTP draft block (``dsv4_gguf.speculative``;
        ``draft`` = 1 or ``"auto"``), same tokens as plain decoding when greedy, the same distribution when
        sampling; needs the MTP sidecar and a session made with ``mtp=True`` (made so when none is given)."""
        from . import speculative as spec

        if speculative not in (None, "mtp"):
            raise ValueError(f"speculative must be None or 'mtp', got {speculative!r}")
        if speculative and draft not in (*spec.DRAFTS, "auto"):
            raise ValueError(f"draft must be one of {', '.join(map(str, spec.DRAFTS))} or 'auto', got {draft!r}")
        ids = self.encode(self.prompt(messages_or_prompt, thinking))
        if not ids:
            raise ValueError("empty prompt")
        sess = session or self.session(ctx or min(len(ids) + max_tokens + 1, 1 << 20), mtp=bool(speculative))
        rng = np.random.default_rng(seed)
        st = self.last_stats = GenerationStats(prompt_tokens=len(ids))
        t0 = time.perf_counter()
        logits = sess.prefill(ids)
        base = sess.pos - len(ids)
        if speculative and base - 1 <= sess.mtp_pos < sess.pos - 1:
            sess.mtp(ids[sess.mtp_pos + 1 - base :])  # the MTP block over the prompt (its window KV rows)
        st.prefill_s = time.perf_counter() - t0
        if speculative:
            st.spec = spec.SpecStats()
            tokens = spec.speculate(
                sess, ids, logits, temperature=temperature, top_p=top_p, rng=rng, draft=draft, stats=st.spec
            )
        else:
            tokens = self._plain_tokens(sess, logits, temperature, top_p, rng, st)
        eos = self.tokenizer.eos_id
        text_so_far = ""
        st.stop_reason = "max_tokens"
        if max_tokens <= 0:
            return
        for tok in tokens:
            st.tokens.append(tok)
            if tok == eos:
                st.stop_reason = "eos"
                break
            text = self.decode_tokens(st.tokens)
            piece, text_so_far = text[len(text_so_far) :], text
            if piece and not piece.endswith("\ufffd"):
                yield piece
            else:
                text_so_far = text_so_far[: len(text_so_far) - len(piece)]
            if len(st.tokens) >= max_tokens:
                break
        else:
            st.stop_reason = "ctx"
        if st.spec is not None:
            sp = st.spec
            st.decode_s = sp.verify_s + sp.draft_s + sp.plain_s
            st.generated_tokens = len(st.tokens) - 1

    @staticmethod
    def _plain_tokens(
        sess: Session, logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator, st: Any
    ) -> Iterator[int]:
        """Plain decoding: sample, feed the token, repeat, until the session's context is full."""
        while True:
            tok = _sample(logits, temperature, top_p, rng)
            yield tok
            if sess.pos >= sess.ctx:
                return
            t1 = time.perf_counter()
            logits = sess.decode(tok)
            st.decode_s += time.perf_counter() - t1
            st.generated_tokens += 1


def _qtype_id(qtype: Any) -> int:
    """A ggml type id from a ``GGMLQuantizationType``, an int or a type name (``"Q2_K"``)."""
    if isinstance(qtype, str):
        from gguf import GGMLQuantizationType

        try:
            return int(GGMLQuantizationType[qtype.upper()])
        except KeyError:
            raise ValueError(f"override_weights: {qtype!r} is not a ggml type name") from None
    return int(qtype)


def _sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    from .speculative import sample

    return sample(logits, temperature, top_p, rng)


def _fits_in_ram(config: dict[str, Any]) -> bool:
    """Whether the mapped GGUF bytes take under 80 % of physical memory (then prefetching them is cheap)."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return False
    size = config.get("file_bytes")
    return isinstance(size, int) and 0 < size < 0.8 * ram


def load(
    path: str | Path,
    threads: int = 0,
    exact: bool = False,
    qat: bool = True,
    mtp: str | Path | bool | None = None,
    device: str = "cpu",
    prefetch: bool | None = None,
    draft_head: str = "q8_0",
) -> Model:
    """Memory-map and validate a DeepSeek-V4 GGUF (pass the first shard of a split set).

    ``threads`` 0 = all cores.  ``exact`` multiplies dequantized weight rows with f32 activations
    (the reference's math; slower) instead of ggml-style quantized-activation dots.  ``qat`` keeps the
    official QAT simulation (FP8 KV, Hadamard + FP4 indexer).  ``mtp``: the MTP sidecar GGUF
    (default: ``mtp-<name>`` next to the model when present; False = none).  ``device``: ``"cpu"`` or
    ``"cuda"``/``"cuda:N"`` (weights and KV on the GPU; RuntimeError saying why when CUDA is not built or
    no device is visible; see dsv4_gguf/cuda.py for what the CUDA backend does not do yet).  ``prefetch``
    maps every page of the file into the process at load, as llama.cpp's mmap prefetch does, so that the
    first tokens that route to an expert take no page faults (default: when the file takes under 80 % of
    RAM; False keeps loading lazy).  ``draft_head``: the output head the MTP block drafts with, ``"q8_0"``
    (default) or ``"q4_0"``: a copy of the head in that type, made on the first draft when it is smaller than
    the file's (a BF16 head: 1.06 GB -> 0.56 / 0.30 GB streamed per draft; drafts are checked by the target model,
    so speculative output is unchanged); ``"model"``: the file's head.  Exact mode drafts with the file's head."""
    return Model(
        path, threads=threads, exact=exact, qat=qat, mtp=mtp, device=device, prefetch=prefetch, draft_head=draft_head
    )
