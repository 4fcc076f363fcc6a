"""Ollama Modelfile side of the DeepSeek-V4 export: model names and their validation, the input GGUF check
(``inspect_gguf``: architecture, split shards, parameter count, file type), and the Modelfile text with its
template, sampling parameters and license.  Names are plain ASCII path components that cannot leave the
models directory."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import chat
from ..templates import ollama_template

ARCH = "deepseek4"
REGISTRY = "registry.ollama.ai"
NAMESPACE = "library"
MEDIA = {
    "manifest": "application/vnd.docker.distribution.manifest.v2+json",
    "config": "application/vnd.docker.container.image.v1+json",
    "model": "application/vnd.ollama.image.model",
    "template": "application/vnd.ollama.image.template",
    "license": "application/vnd.ollama.image.license",
    "params": "application/vnd.ollama.image.params",
}
# Sampling per the DeepSeek-V4 model card; EOS is the only stop string the chat format needs.
DEFAULT_PARAMS: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, "stop": list(chat.STOP_STRINGS)}
DEFAULT_NUM_CTX = 32768
LICENSE_MIT = """MIT License

Copyright (c) DeepSeek

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
# llama.cpp LLAMA_FTYPE names for general.file_type (the ones a DSV4 GGUF can carry).
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16", 38: "MXFP4_MOE"}  # fmt: skip
_NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


class OllamaExportError(RuntimeError):
    """Export refused or failed; the message names the file or name, what was expected, and the fix."""


# ---------------------------------------------------------------------------------------------------
# Names and input GGUFs
# ---------------------------------------------------------------------------------------------------


def _show(text: str) -> str:
    return repr(text) if len(text) <= 100 else repr(text[:60]) + f"... ({len(text)} characters)"


def _name_problem(part: str) -> str:
    """What breaks the name rule, specifically (the error says it next to the rule)."""
    import unicodedata

    if not part:
        return "it is empty"
    if len(part) > 80:
        return f"it is {len(part)} characters long"
    for ch in part:
        if ch in "/\\":
            return f"it contains the path separator {ch!r}"
        if not ch.isascii():
            return f"it contains U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')} (only ASCII is allowed)"
        if not ch.isprintable():
            return f"it contains the control character {ch!r}"
    if ".." in part:
        return "it contains '..'"
    if not _NAME_PART.fullmatch(part[0]):
        return f"it starts with {part[0]!r}"
    bad = sorted({ch for ch in part if not _NAME_PART.fullmatch("a" + ch)})
    return f"it contains {', '.join(map(repr, bad))}"


def parse_name(name: str) -> tuple[str, str]:
    """`NAME[:TAG]` -> (name, tag). Only plain ASCII names: no host, namespace, path separators, `..`,
    control or look-alike characters (a name becomes two path components under the models directory)."""
    model, _, tag = name.partition(":")
    tag = tag or "latest"
    for what, part in (("name", model), ("tag", tag)):
        if "/" in part or "\\" in part or ".." in part or not _NAME_PART.fullmatch(part):
            raise OllamaExportError(
                f"invalid model {what} {_show(part)} in {_show(name)}: {_name_problem(part)}; use 1-80 characters from "
                "[A-Za-z0-9_.-], starting with a letter, digit or '_', with no '/', '\\' or '..' "
                "(e.g. --name deepseek-v4-flash:q4_k_m)"
            )
    return model, tag


@dataclass
class GGUFInfo:
    files: list[Path]  # one file, or every shard in order
    file_type: str
    n_params: int
    context_length: int | None
    headers: list[Any] = field(default_factory=list, repr=False, compare=False)  # parsed GGUFFile per file
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(f.stat().st_size for f in self.files)


def _read_header(path: Path) -> Any:
    from ..gguf_io import GGUFError, GGUFFile

    try:
        return GGUFFile(path)
    except (GGUFError, OSError) as exc:
        detail = str(exc).removeprefix(f"{path}: ")  # the reader's message names the file too
        raise OllamaExportError(f"{path}: not a readable GGUF file: {detail}") from exc


def inspect_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Checks that `path` is a deepseek4 GGUF and finds its split shards (`*-00001-of-0000N.gguf`).

    Each file's header is parsed once, by dsv4_gguf's own reader (a 129k-token vocabulary takes ~0.1 s where
    the `gguf` package's ``GGUFReader`` takes 5-10 s); ``install`` and ``install_via_api`` reuse the result."""
    path = Path(path)
    if not path.is_file():
        raise OllamaExportError(f"{path}: no such GGUF file")
    first = _read_header(path)
    md = first.metadata
    arch = md.get("general.architecture")
    if arch != ARCH:
        raise OllamaExportError(
            f"{path}: general.architecture is {arch!r}, expected {ARCH!r}; this exporter only writes DeepSeek-V4 "
            "models (convert the checkpoint with dsv4-gguf first)"
        )
    files = [path]
    count = md.get("split.count")
    if count is not None and int(count) > 1:
        match = _SPLIT_NAME.match(path.name)
        if match is None or int(match["count"]) != int(count):
            raise OllamaExportError(
                f"{path}: split.count is {count} but the name is not <prefix>-NNNNN-of-{count:05d}.gguf"
            )
        files = [
            path.with_name(f"{match['prefix']}-{i:05d}-of-{int(count):05d}.gguf") for i in range(1, int(count) + 1)
        ]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise OllamaExportError(f"{path}: split GGUF is missing shard(s) {missing}")
    headers = [first if shard == path else _read_header(shard) for shard in files]
    n_params = sum(math.prod(t.shape) for h in headers for t in h.tensors.values())
    ftype = md.get("general.file_type")
    ctx = md.get(f"{ARCH}.context_length")
    return GGUFInfo(
        files,
        FILE_TYPES.get(int(ftype), "unknown") if ftype is not None else "unknown",
        n_params,
        int(ctx) if ctx is not None else None,
        headers,
    )


def human_count(n: int) -> str:
    """Parameter count as Ollama shows it (`model_type`): 284B, 13.2B, 7.5M."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            text = f"{n / scale:.1f}".removesuffix(".0")
            return text + unit
    return str(n)


# ---------------------------------------------------------------------------------------------------
# Modelfile
# ---------------------------------------------------------------------------------------------------


def parameters(num_ctx: int) -> dict[str, Any]:
    return {**DEFAULT_PARAMS, "num_ctx": num_ctx}


def modelfile(source: Path, num_ctx: int, license_text: str = LICENSE_MIT) -> str:
    """The Modelfile for `ollama create -f`: FROM (a split model's directory), TEMPLATE, PARAMETERs, LICENSE."""
    template = ollama_template()
    for what, text in (("TEMPLATE", template), ("LICENSE", license_text)):
        # Ollama's Modelfile parser ends a value at `"""` and drops non-printable characters.
        if '"""' in text or not all(ch.isprintable() or ch in "\n\t" for ch in text):
            raise OllamaExportError(
                f'{what} text contains """ or non-printable characters; a Modelfile cannot carry it'
            )
    lines = [f"FROM {source}", f'TEMPLATE """{template}"""']
    for key, value in parameters(num_ctx).items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {json.dumps(item, ensure_ascii=False) if key == 'stop' else item}")
    lines.append(f'LICENSE """{license_text}"""')
    return "\n".join(lines) + "\n"
