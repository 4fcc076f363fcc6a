"""llama-cpp-python backend: a GGUF loaded in process by llama.cpp (arch `deepseek4`).

Scoring uses `logits_all=True` and evaluates the whole span in one `eval`, so every prompt position has
its row. Generation is greedy through `create_completion`. The KV cache is reset before every call, so
results do not depend on call order (needed for resume to reproduce an uninterrupted run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Backend, BackendError, Capabilities

__all__ = ["LlamaCppBackend"]


class LlamaCppBackend(Backend):
    kind = "llama-cpp"
    caps = Capabilities(logits=True, prompt_topk=True, generate=True, tokenize=True)

    def __init__(
        self, path: str | Path, n_ctx: int = 4096, n_threads: int | None = None, n_gpu_layers: int = 0, seed: int = 0
    ) -> None:
        try:
            import llama_cpp
        except ImportError as e:  # pragma: no cover - depends on the install
            raise BackendError(
                "llama-cpp-python is not installed: pip install 'dsv4-gguf[eval]' "
                "(it builds llama.cpp from source) or use --backend runtime"
            ) from e
        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"{self.path}: no such GGUF file")
        self._n_ctx = n_ctx
        try:
            self._llm = llama_cpp.Llama(
                str(self.path),
                n_ctx=n_ctx,
                n_batch=min(n_ctx, 512),
                n_threads=n_threads,
                n_threads_batch=n_threads,
                logits_all=True,
                n_gpu_layers=n_gpu_layers,
                seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as e:
            raise BackendError(
                f"{self.path}: llama.cpp could not load it ({e}); check that the "
                "installed llama-cpp-python supports arch deepseek4 (>= 0.3.36)"
            ) from e

    def describe(self) -> dict[str, Any]:
        import llama_cpp

        return {
            **super().describe(),
            "path": str(self.path),
            "n_ctx": self._n_ctx,
            "llama_cpp_python": llama_cpp.__version__,
        }

    @property
    def bos_id(self) -> int | None:
        bos = self._llm.token_bos()
        return None if bos < 0 else int(bos)

    @property
    def n_vocab(self) -> int:
        return int(self._llm.n_vocab())

    def tokenize(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode(), add_bos=False, special=True))

    def logits(self, tokens: Sequence[int], first: int = 0) -> np.ndarray:
        n = len(tokens)
        if n > self._n_ctx:
            raise BackendError(
                f"{n} tokens exceed the context of {self._n_ctx} this backend was opened with; raise --n-ctx"
            )
        self._llm.reset()
        self._llm.eval(list(tokens))
        return np.array(self._llm.scores[first : n - 1], dtype=np.float32, copy=True)

    def generate(self, prompt: str, max_tokens: int, stop: Sequence[str] = ()) -> str:
        self._llm.reset()
        toks = self.tokenize(prompt)
        out = self._llm.create_completion(
            toks, max_tokens=max_tokens, temperature=0.0, top_k=1, stop=list(stop) or None, seed=0
        )
        return str(out["choices"][0]["text"])  # type: ignore[index]

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None
