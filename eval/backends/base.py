"""Backend interface with declared capabilities, and the log-softmax every backend's logits go through.

A backend answers at most three questions: the logits at every prompt position (teacher-forced scoring),
the top-k prompt log-probabilities (a reference served elsewhere, e.g. vLLM `prompt_logprobs`), and a
greedy generation. It declares which it can answer; asking for anything else raises CapabilityError
before any work is done. Backends know nothing about datasets, runs or reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Backend", "Capabilities", "CapabilityError", "BackendError", "SparseRows", "log_softmax"]


class BackendError(RuntimeError):
    """A backend failed (load error, HTTP error, malformed response); the message names the fix."""


class CapabilityError(BackendError):
    """The backend cannot do what the task needs (e.g. prompt logprobs from llama-server or Ollama)."""


@dataclass(frozen=True)
class Capabilities:
    logits: bool = False  # full-vocabulary logits at every prompt position (KLD candidate, NLL)
    prompt_topk: bool = False  # top-k prompt log-probabilities only: usable as a KLD/NLL reference
    generate: bool = False  # greedy completion of a pre-rendered prompt
    tokenize: bool = False  # the model's own tokenizer

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64. Every backend's rows pass through this one function, so two
    runs with bit-identical logits give bit-identical log-probabilities (KLD exactly 0)."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


@dataclass
class SparseRows:
    """Sparse reference log-probabilities for the positions of one scored span.

    Row i is the distribution predicting `target[i]`; `top_ids[i]` are its k most likely ids sorted by
    decreasing log-probability (ties by increasing id), `top_lp[i]` their log-probabilities and
    `target_lp[i]` the log-probability of the token that actually follows. k may be smaller for a row
    (padded with id -1, log-probability -inf)."""

    target: np.ndarray  # int32 [n]
    target_lp: np.ndarray  # float64 [n]
    top_ids: np.ndarray  # int32 [n, k]
    top_lp: np.ndarray  # float64 [n, k]

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @classmethod
    def from_logits(cls, logits: np.ndarray, target: Sequence[int], k: int, block: int = 64) -> SparseRows:
        logits = np.asarray(logits)
        n, vocab = logits.shape
        if len(target) != n:
            raise ValueError(f"{n} logit rows but {len(target)} targets")
        k = min(k, vocab)
        tgt = np.asarray(target, dtype=np.int32)
        ids = np.empty((n, k), np.int32)
        lps = np.empty((n, k), np.float64)
        tlp = np.empty(n, np.float64)
        for s in range(0, n, block):
            lp = log_softmax(logits[s : s + block])
            kth = np.partition(lp, vocab - k, axis=-1)[:, vocab - k]  # k-th largest value per row
            for j in range(lp.shape[0]):
                cand = np.flatnonzero(lp[j] >= kth[j])  # every id tied at the boundary is a candidate
                order = cand[np.lexsort((cand, -lp[j, cand]))][:k]  # by -lp, then by id
                ids[s + j] = order
                lps[s + j] = lp[j, order]
            tlp[s : s + block] = lp[np.arange(lp.shape[0]), tgt[s : s + block]]
        return cls(tgt, tlp, ids, lps)

    def save(self, path: Any) -> None:
        np.savez(path, target=self.target, target_lp=self.target_lp, top_ids=self.top_ids, top_lp=self.top_lp)

    @classmethod
    def load(cls, path: Any) -> SparseRows:
        with np.load(path) as z:
            return cls(z["target"], z["target_lp"], z["top_ids"], z["top_lp"])

    def slice(self, start: int, stop: int) -> SparseRows:
        return SparseRows(
            self.target[start:stop], self.target_lp[start:stop], self.top_ids[start:stop], self.top_lp[start:stop]
        )


class Backend:
    """One model behind one API. Subclasses set `kind` and `caps` and override what `caps` declares."""

    kind: str = "abstract"
    caps: Capabilities = Capabilities()
    # True where `logits` returns log-probabilities already (a server's full-vocabulary prompt_logprobs):
    # scoring then takes the rows as they are; normalizing them again would change their last bits
    logits_normalized: bool = False

    def require(self, **needed: bool) -> None:
        missing = [name for name, want in needed.items() if want and not getattr(self.caps, name)]
        if missing:
            raise CapabilityError(
                f"backend '{self.kind}' cannot provide {', '.join(missing)} (it declares "
                f"{ {k: v for k, v in self.caps.as_dict().items() if v} }); use the in-process runtime, "
                "llama-cpp-python, or a vLLM/SGLang server with prompt_logprobs for scoring tasks"
            )

    def describe(self) -> dict[str, Any]:
        """Manifest entry: what was run (path, hash, server, model name), never secrets."""
        return {"kind": self.kind, "capabilities": self.caps.as_dict()}

    @property
    def bos_id(self) -> int | None:
        return None

    @property
    def n_vocab(self) -> int:
        raise CapabilityError(f"backend '{self.kind}' does not expose its vocabulary size")

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text`, special tokens parsed, no BOS added."""
        raise CapabilityError(f"backend '{self.kind}' has no tokenizer")

    def logits(self, tokens: Sequence[int], first: int = 0) -> np.ndarray:
        """[len(tokens) - 1 - first, n_vocab] (float32 logits, or float64 log-probabilities where
        `logits_normalized`): row i predicts tokens[first + i + 1]."""
        raise CapabilityError(f"backend '{self.kind}' cannot return prompt logits")

    def prompt_topk(self, tokens: Sequence[int], first: int, k: int) -> SparseRows:
        """Top-k log-probabilities for the same rows as `logits`."""
        if self.caps.logits:
            return SparseRows.from_logits(self.logits(tokens, first), list(tokens[first + 1 :]), k)
        raise CapabilityError(f"backend '{self.kind}' cannot return prompt log-probabilities")

    def generate(self, prompt: str, max_tokens: int, stop: Sequence[str] = ()) -> str:
        """Greedy (temperature 0) completion of an already rendered prompt; returns the text only."""
        raise CapabilityError(f"backend '{self.kind}' cannot generate")

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
