"""The project's own runtime in process (`dsv4_gguf.load`): full-vocabulary logits at every prompt
position (`Session.prefill(all_logits=True)`), greedy generation, the GGUF's own tokenizer.

One session of --n-ctx tokens is kept and reset before every call, so results do not depend on call
order (resume must reproduce an uninterrupted run), nor on weights swapped in between (`override_weights`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from .base import Backend, BackendError, Capabilities

__all__ = ["RuntimeBackend"]


class RuntimeBackend(Backend):
    kind = "runtime"
    caps = Capabilities(logits=True, prompt_topk=True, generate=True, tokenize=True)

    def __init__(self, path: str | Path, n_ctx: int = 4096, threads: int | None = None, exact: bool = False) -> None:
        import dsv4_gguf

        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"{self.path}: no such GGUF file")
        self._n_ctx = n_ctx
        self._exact = exact
        try:
            self._model = dsv4_gguf.load(self.path, threads=threads or 0, exact=exact)
        except (ValueError, RuntimeError) as e:
            raise BackendError(f"{self.path}: the runtime could not load it ({e})") from e
        self._sess: Any = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path), "n_ctx": self._n_ctx, "exact": self._exact}

    def _session(self) -> Any:
        if self._sess is None:
            self._sess = self._model.session(self._n_ctx)
        self._sess.reset()
        return self._sess

    @property
    def bos_id(self) -> int | None:
        return int(self._model.tokenizer.bos_id)

    @property
    def n_vocab(self) -> int:
        return int(self._model.vocab_size)

    def tokenize(self, text: str) -> list[int]:
        return list(self._model.encode(text))

    def logits(self, tokens: Sequence[int], first: int = 0) -> np.ndarray:
        if len(tokens) > self._n_ctx:
            raise BackendError(f"{len(tokens)} tokens exceed the context of {self._n_ctx}; raise --n-ctx")
        out = self._session().prefill(np.asarray(tokens, np.int32), all_logits=True)
        return np.asarray(out[first : len(tokens) - 1], dtype=np.float32)

    def override_weights(
        self, weights: Mapping[str, tuple[Any, Any]] | Iterable[tuple[str, Any, Any]]
    ) -> AbstractContextManager[None]:
        """`dsv4_gguf.runtime.Model.override_weights` of the loaded model: calls inside the ``with`` block run
        with those weights (the session is reset before every call, so nothing computed before carries over)."""
        return self._model.override_weights(weights)

    def generate(self, prompt: str, max_tokens: int, stop: Sequence[str] = ()) -> str:
        text = "".join(self._model.generate(prompt, max_tokens=max_tokens, temperature=0.0, session=self._session()))
        for s in stop:
            if s in text:
                text = text[: text.index(s)]
        return text

    def close(self) -> None:
        self._sess = None
        self._model = None
