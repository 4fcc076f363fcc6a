"""llama.cpp `.kld` files (`llama-perplexity --kl-divergence-base FILE`): reader and writer.

Layout (tools/perplexity/perplexity.cpp): 8-byte magic `_logits_`; uint32 n_ctx; int32 n_vocab;
int32 n_chunk; int32 tokens[n_ctx * n_chunk]; then per chunk, for each of the n_ctx - 1 - n_ctx/2
scored positions (the second half of the chunk; position j predicts token j+1), nv = 2*ceil(n_vocab/2)+4
uint16 values: float32 scale and float32 min_log_prob (as 4 uint16), then one uint16 q per vocab entry,
log p = scale*q + min_log_prob, logits clamped below at max_logit-16. The writer mirrors llama.cpp's
quantization (float32 arithmetic, round-to-nearest) so files it writes are accepted by llama-perplexity.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["KldFile", "KldFormatError", "write_kld", "scored_first"]

MAGIC = b"_logits_"


class KldFormatError(ValueError):
    pass


def scored_first(n_ctx: int) -> int:
    """First scored position of a chunk (llama.cpp scores the second half, so every token has context)."""
    return n_ctx // 2


def _nv(n_vocab: int) -> int:
    return 2 * ((n_vocab + 1) // 2) + 4


class KldFile:
    """Memory-mapped reader; `chunks()` yields (tokens[n_ctx], log-prob rows float32 [n_scored, n_vocab])."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(20)
        if len(head) < 20 or head[:8] != MAGIC:
            raise KldFormatError(
                f"{self.path}: not a llama.cpp log-probability file (magic {head[:8]!r}, "
                f"expected {MAGIC!r}); write one with llama-perplexity --kl-divergence-base"
            )
        self.n_ctx, self.n_vocab, self.n_chunk = struct.unpack("<Iii", head[8:20])
        self.n_scored = self.n_ctx - 1 - scored_first(self.n_ctx)
        self.nv = _nv(self.n_vocab)
        expect = 20 + 4 * self.n_ctx * self.n_chunk + 2 * self.nv * self.n_scored * self.n_chunk
        if self.n_ctx < 2 or self.n_vocab < 1 or self.n_chunk < 0 or size != expect:
            raise KldFormatError(
                f"{self.path}: {size} bytes, expected {expect} for n_ctx={self.n_ctx} "
                f"n_vocab={self.n_vocab} n_chunk={self.n_chunk}; the file is truncated or corrupt"
            )
        self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        self.tokens = self._mm[20 : 20 + 4 * self.n_ctx * self.n_chunk].view("<i4").reshape(self.n_chunk, self.n_ctx)

    def rows(self, chunk: int) -> np.ndarray:
        off = 20 + 4 * self.n_ctx * self.n_chunk + 2 * self.nv * self.n_scored * chunk
        raw = self._mm[off : off + 2 * self.nv * self.n_scored].view("<u2").reshape(self.n_scored, self.nv)
        head = np.ascontiguousarray(raw[:, :4]).view("<f4")  # [n, 2]: scale, min_log_prob
        q = raw[:, 4 : 4 + self.n_vocab].astype(np.float32)
        return head[:, :1] * q + head[:, 1:2]

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for c in range(self.n_chunk):
            yield np.asarray(self.tokens[c]), self.rows(c)


def _quantize_row(logits: np.ndarray, nv: int) -> np.ndarray:
    x = logits.astype(np.float32)
    max_logit = np.float32(x.max())
    min_logit = np.float32(max(np.float32(x.min()), max_logit - np.float32(16)))
    sum_exp = float(np.exp((x - max_logit).astype(np.float32)).astype(np.float64).sum())
    log_sum_exp = np.float32(np.log(sum_exp))
    min_log_prob = np.float32(min_logit - max_logit - log_sum_exp)
    scale = np.float32((max_logit - min_logit) / np.float32(65535))
    out = np.zeros(nv, np.uint16)
    out[:4] = np.array([scale, min_log_prob], "<f4").view("<u2")
    if scale:
        inv = np.float32(1) / scale
        qv = np.rint((inv * (x - min_logit)).astype(np.float32))
        out[4 : 4 + len(x)] = np.where(x > min_logit, qv, 0).astype(np.uint16)
    return out


def write_kld(path: str | Path, n_ctx: int, tokens: np.ndarray, chunk_logits: list[np.ndarray]) -> None:
    """Write a `.kld` base file: tokens [n_chunk, n_ctx]; chunk_logits[c] = logits [n_scored, n_vocab]."""
    tokens = np.asarray(tokens, np.int32).reshape(len(chunk_logits), n_ctx)
    n_vocab = chunk_logits[0].shape[1] if chunk_logits else 0
    nv = _nv(n_vocab)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<Iii", n_ctx, n_vocab, len(chunk_logits)))
        f.write(tokens.astype("<i4").tobytes())
        for rows in chunk_logits:
            if rows.shape != (n_ctx - 1 - scored_first(n_ctx), n_vocab):
                raise ValueError(
                    f"chunk logits shape {rows.shape}, expected {(n_ctx - 1 - scored_first(n_ctx), n_vocab)}"
                )
            f.write(np.stack([_quantize_row(r, nv) for r in rows]).astype("<u2").tobytes())
    os.replace(tmp, path)
