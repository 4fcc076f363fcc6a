"""A deterministic backend with known outputs, for tests and for dry runs of the whole pipeline.

Logits at position t depend on the last two tokens through a seeded random table; `noise` adds a seeded
perturbation of that size (a stand-in for a quantized variant: noise 0 is the reference itself).
Generation returns canned answers: the text after "ANSWER:" in the prompt's last user turn, echoed,
or a fixed string. Tokenization is one id per UTF-8 byte (mod vocab). Not a language model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Backend, Capabilities

__all__ = ["FakeBackend", "parse_fake_spec"]


def parse_fake_spec(spec: str) -> dict[str, Any]:
    """'seed=0,noise=0.1,vocab=64,bpw=4.5,fail_after=3' -> kwargs (unknown keys are an error)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, val = part.partition("=")
        if key in ("seed", "vocab", "fail_after"):
            out[key] = int(val)
        elif key in ("noise", "bpw"):
            out[key] = float(val)
        elif key == "answer":
            out[key] = val
        else:
            raise ValueError(
                f"fake backend: unknown option {key!r} in {spec!r} (known: seed, noise, vocab, bpw, fail_after, answer)"
            )
    return out


class FakeBackend(Backend):
    kind = "fake"
    caps = Capabilities(logits=True, prompt_topk=True, generate=True, tokenize=True)

    def __init__(
        self,
        seed: int = 0,
        noise: float = 0.0,
        vocab: int = 64,
        bpw: float | None = None,
        fail_after: int | None = None,
        answer: str | None = None,
        variant_seed: int = 1,
    ) -> None:
        self.seed, self.noise, self.vocab, self.bpw, self.answer = seed, noise, vocab, bpw, answer
        rng = np.random.default_rng(seed)
        self._table = rng.standard_normal((vocab, vocab, vocab), dtype=np.float32) * 2.0
        nrng = np.random.default_rng([seed, variant_seed, int(noise * 1e6)])
        self._noise = (nrng.standard_normal((vocab, vocab, vocab), dtype=np.float32) * noise).astype(np.float32)
        # interrupt simulation: raise KeyboardInterrupt on the call after `fail_after` successful ones
        self.fail_after, self.calls = fail_after, 0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seed": self.seed, "noise": self.noise, "vocab": self.vocab, "bpw": self.bpw}

    @property
    def bos_id(self) -> int | None:
        return 0

    @property
    def n_vocab(self) -> int:
        return self.vocab

    def _tick(self) -> None:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt(f"fake backend: simulated interrupt after {self.calls} calls")
        self.calls += 1

    def tokenize(self, text: str) -> list[int]:
        return [1 + b % (self.vocab - 1) for b in text.encode()]

    def logits(self, tokens: Sequence[int], first: int = 0) -> np.ndarray:
        self._tick()
        t = np.asarray(tokens, dtype=np.int64)
        prev = np.concatenate([[0], t[:-1]])
        rows = slice(first, len(t) - 1)
        return (self._table[prev[rows], t[rows]] + self._noise[prev[rows], t[rows]]).astype(np.float32)

    def generate(self, prompt: str, max_tokens: int, stop: Sequence[str] = ()) -> str:
        self._tick()
        if self.answer is not None:
            return self.answer
        m = re.findall(r"ANSWER:(.*?)(?:<｜Assistant｜>|$)", prompt, re.S)
        return m[-1] if m else "no answer"
