"""`dsv4-gguf ollama`: writes the Modelfile (never over the model; a different existing file is replaced
only with --force, alias --overwrite), then installs into the models store or uploads through the API."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .api import check_server, install_via_api
from .model import DEFAULT_NUM_CTX, OllamaExportError, inspect_gguf, modelfile, parse_name
from .store import install

# ollama_main's --help description (the first line of the former single module's docstring).
_DESCRIPTION = "Ollama export for DeepSeek-V4 GGUFs: a Modelfile, and either a direct install into an Ollama models"


def add_ollama_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="DeepSeek-V4 GGUF (for a split model: its first shard)")
    parser.add_argument("--name", required=True, help="Ollama model name, NAME[:TAG] (tag defaults to latest)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="Ollama models directory to install into (default: $OLLAMA_MODELS or ~/.ollama/models)",
    )
    where.add_argument(
        "--api", default=None, help="upload through a running server instead, e.g. http://127.0.0.1:11434"
    )
    where.add_argument("--modelfile-only", action="store_true", help="only write the Modelfile")
    parser.add_argument(
        "--modelfile",
        type=Path,
        default=None,
        help="where to write the Modelfile (default: Modelfile next to the GGUF)",
    )
    parser.add_argument(
        "--num-ctx",
        type=int,
        default=None,
        help=f"context length parameter (default: min(model context, {DEFAULT_NUM_CTX}))",
    )
    parser.add_argument(
        "--force",
        "--overwrite",
        dest="force",
        action="store_true",
        help="replace an existing model of the same name and tag, and a different --modelfile",
    )


def _check_modelfile_target(target: Path, text: str, inputs: list[Path], force: bool) -> None:
    """Never write the Modelfile over the model itself; replace another existing file only with --overwrite
    (the same text again is no replacement: reruns and resumed installs pass)."""
    if not target.exists():
        return
    for f in inputs:
        if os.path.samefile(target, f):
            raise OllamaExportError(f"{target}: is an input of this command (the model); give another --modelfile")
    data = text.encode("utf-8")
    same = target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data
    if not force and not same:
        raise OllamaExportError(f"{target}: already exists; choose another --modelfile or pass --overwrite")


def run_ollama(args: argparse.Namespace) -> int:
    try:
        parse_name(args.name)
        if args.api:
            check_server(args.api)  # a server that does not answer fails before the GGUF is parsed
        info = inspect_gguf(args.model)
        num_ctx = args.num_ctx or min(info.context_length or DEFAULT_NUM_CTX, DEFAULT_NUM_CTX)
        source = (info.files[0].parent if len(info.files) > 1 else info.files[0]).resolve()
        target = args.modelfile or args.model.parent / "Modelfile"
        if not target.parent.is_dir():
            raise OllamaExportError(
                f"{target}: the folder {target.parent} does not exist; create it or give another --modelfile"
            )
        text = modelfile(source, num_ctx)
        _check_modelfile_target(target, text, info.files, args.force)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        print(f"wrote {target}")
        if args.api:
            install_via_api(args.model, args.name, args.api, force=args.force, num_ctx=num_ctx, info=info)
            print(f"created {args.name} on {args.api}")
        elif not args.modelfile_only:
            result = install(args.model, args.name, args.models_dir, force=args.force, num_ctx=num_ctx, info=info)
            print(f"installed {args.name} -> {result.manifest}")
    except OllamaExportError as exc:
        print(f"dsv4-gguf ollama: error: {exc}", file=sys.stderr)
        return 1
    return 0


def ollama_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dsv4-gguf ollama", description=_DESCRIPTION)
    add_ollama_arguments(parser)
    return run_ollama(parser.parse_args(argv))
