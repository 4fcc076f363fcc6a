"""HTTP backends: any OpenAI-compatible server (llama-server, vLLM, SGLang) and Ollama's native API.

Standard library only (urllib), bounded timeouts, a few retries on connection errors. Declared
capabilities follow what the servers can do: llama-server and Ollama generate but cannot return
prompt-token log-probabilities (llama-server rejects `echo`, Ollama reports logprobs of generated tokens
only); vLLM/SGLang return top-k `prompt_logprobs`, which makes them a full-precision *reference*. A
candidate needs whole rows: `prompt_logprobs: -1` (vLLM's "all vocab_size log probabilities", served with
`--max-logprobs -1`; `dsv4-gguf serve` for short prompts) sends vocabulary x prompt entries as JSON, fine
for checking a server against the runtime, far too slow for a real vocabulary at eval lengths. Prompts are
sent pre-rendered (raw), so every backend sees identical text.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Backend, BackendError, Capabilities, CapabilityError, SparseRows

__all__ = ["OpenAIBackend", "OllamaBackend"]


def _post(url: str, payload: dict[str, Any], timeout: float, retries: int = 2) -> dict[str, Any]:
    data = json.dumps(payload).encode()
    last: Exception | None = None
    for attempt in range(retries + 1):
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode())
        except urllib.error.HTTPError as e:  # the server answered: no retry
            body = e.read().decode(errors="replace")[:500]
            raise BackendError(f"POST {url}: HTTP {e.code}: {body}") from e
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            last = e
            time.sleep(0.2 * (attempt + 1))
    raise BackendError(f"POST {url}: no answer after {retries + 1} tries ({last}); is the server running?")


class OpenAIBackend(Backend):
    """`/v1/completions` for generation; `prompt_logprobs` (vLLM/SGLang extension) for references (top-k)
    and, with -1 (whole rows, already normalized), as a scored candidate."""

    kind = "openai"
    logits_normalized = True

    def __init__(
        self, url: str, model: str, prompt_logprobs: bool = False, timeout: float = 600.0, seed: int = 0
    ) -> None:
        self.url, self.model, self.timeout, self.seed = url.rstrip("/"), model, timeout, seed
        if self.url.endswith("/v1"):
            self.url = self.url[:-3]
        self.caps = Capabilities(logits=prompt_logprobs, prompt_topk=prompt_logprobs, generate=True, tokenize=True)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url, "model": self.model}

    @property
    def bos_id(self) -> int | None:
        """The id the server's tokenizer prepends to an empty text, if exactly one (DeepSeek: BOS)."""
        if not hasattr(self, "_bos"):
            out = _post(
                f"{self.url}/tokenize",
                {"model": self.model, "prompt": "", "content": "", "add_special_tokens": True, "add_special": True},
                self.timeout,
            )
            toks = out.get("tokens") or []
            self._bos = int(toks[0]) if len(toks) == 1 else None
        return self._bos

    def tokenize(self, text: str) -> list[int]:
        # vLLM: {"model","prompt"} -> {"tokens"}; llama-server: {"content"} -> {"tokens"}
        out = _post(
            f"{self.url}/tokenize",
            {"model": self.model, "prompt": text, "content": text, "add_special_tokens": False, "add_special": False},
            self.timeout,
        )
        return [int(t) for t in out["tokens"]]

    def _prompt_logprobs(self, tokens: Sequence[int], k: int) -> list[Any]:
        """The server's `prompt_logprobs` entries for `tokens` (k: top alternatives, -1 the whole row)."""
        if not self.caps.prompt_topk:
            raise CapabilityError(
                f"{self.url}: prompt log-probabilities were not enabled for this server "
                "(llama-server and Ollama cannot return them; use --ref-url with vLLM/SGLang)"
            )
        out = _post(
            f"{self.url}/v1/completions",
            {
                "model": self.model,
                "prompt": list(map(int, tokens)),
                "max_tokens": 1,
                "temperature": 0.0,
                "prompt_logprobs": k,
            },
            self.timeout,
        )
        rows = out["choices"][0].get("prompt_logprobs")
        if rows is None:
            raise CapabilityError(
                f"{self.url}: the server ignored 'prompt_logprobs' (llama-server does); "
                "serve the reference with vLLM or SGLang"
            )
        if len(rows) != len(tokens):
            raise BackendError(f"{self.url}: {len(rows)} prompt_logprobs entries for {len(tokens)} tokens")
        return list(rows)

    @staticmethod
    def _entry(row: dict[str, Any]) -> dict[int, float]:
        return {int(t): float(v["logprob"] if isinstance(v, dict) else v) for t, v in row.items()}

    @property
    def n_vocab(self) -> int:
        """The length of a whole row (`prompt_logprobs: -1` on two tokens, asked once)."""
        if not hasattr(self, "_n_vocab"):
            self._n_vocab = len(self._prompt_logprobs([0, 0], -1)[1])
        return self._n_vocab

    def logits(self, tokens: Sequence[int], first: int = 0) -> np.ndarray:
        """Log-probabilities (float64, whole rows) from `prompt_logprobs: -1`; a row that lacks any id is an
        error (vLLM caps rows at --max-logprobs, default 20: serve with --max-logprobs -1)."""
        rows = self._prompt_logprobs(tokens, -1)
        V = self.n_vocab
        n = len(tokens) - 1 - first
        out = np.empty((n, V), np.float64)
        for i in range(n):
            entry = self._entry(rows[first + i + 1])
            if len(entry) != V or min(entry) < 0 or max(entry) >= V:
                raise BackendError(
                    f"{self.url}: prompt_logprobs=-1 gave {len(entry)} log-probabilities at position "
                    f"{first + i + 1}, not the whole vocabulary of {V}; the server must return whole rows "
                    "(vLLM: --max-logprobs -1)"
                )
            out[i, list(entry)] = list(entry.values())
        return out

    def prompt_topk(self, tokens: Sequence[int], first: int, k: int) -> SparseRows:
        rows = self._prompt_logprobs(tokens, k)
        n = len(tokens) - 1 - first
        ids = np.full((n, k), -1, np.int32)
        lps = np.full((n, k), -np.inf, np.float64)
        tgt = np.asarray(tokens[first + 1 :], np.int32)
        tlp = np.empty(n, np.float64)
        for i in range(n):
            # entry p holds log p(tokens[p] | tokens[:p]): the row predicting target i is entry first+i+1
            entry = self._entry(rows[first + i + 1])
            if int(tgt[i]) not in entry:
                raise BackendError(
                    f"{self.url}: prompt_logprobs at position {first + i + 1} lacks the prompt token itself"
                )
            tlp[i] = entry[int(tgt[i])]
            top = sorted(entry.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
            ids[i, : len(top)] = [t for t, _ in top]
            lps[i, : len(top)] = [v for _, v in top]
        return SparseRows(tgt, tlp, ids, lps)

    def generate(self, prompt: str, max_tokens: int, stop: Sequence[str] = ()) -> str:
        out = _post(
            f"{self.url}/v1/completions",
            {
                "model": self.model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0.0,
                "seed": self.seed,
                "stop": list(stop) or None,
            },
            self.timeout,
        )
        return str(out["choices"][0]["text"])


class OllamaBackend(Backend):
    """Ollama `/api/generate` in raw mode (our rendered prompt, no template applied): generation only."""

    kind = "ollama"
    caps = Capabilities(generate=True)

    def __init__(self, url: str, model: str, timeout: float = 600.0, seed: int = 0, num_ctx: int | None = None):
        self.url, self.model, self.timeout, self.seed, self.num_ctx = url.rstrip("/"), model, timeout, seed, num_ctx

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url, "model": self.model}

    def generate(self, prompt: str, max_tokens: int, stop: Sequence[str] = ()) -> str:
        options: dict[str, Any] = {"temperature": 0, "seed": self.seed, "num_predict": max_tokens}
        if stop:
            options["stop"] = list(stop)
        if self.num_ctx:
            options["num_ctx"] = self.num_ctx
        out = _post(
            f"{self.url}/api/generate",
            {"model": self.model, "prompt": prompt, "raw": True, "stream": False, "options": options},
            self.timeout,
        )
        return str(out["response"])
