"""``dsv4-gguf`` command line: parses arguments and calls library functions, nothing more.

Exit codes: 0 success, 1 a handled error (message on stderr, naming the file/tensor and the fix),
2 bad usage (argparse), 130 interrupted.  Every error is one line on stderr; ``--debug`` (before or after
the command) prints the traceback above it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .cli_errors import UsageError, error_message
from .constants import MAX_CTX

if TYPE_CHECKING:
    from . import runtime

_EPILOG = """\
Start here:
  dsv4-gguf synth --preset tiny --out ./tiny-ckpt     write a small synthetic DeepSeek-V4 checkpoint
  dsv4-gguf check ./tiny-ckpt                         validate a checkpoint folder and print its census
  dsv4-gguf synth --preset flash --dry-run            census of the real V4-Flash release
Run 'dsv4-gguf COMMAND --help' for the options of each command.
"""


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one line naming the option, with a pointer to --help (argparse prints the whole
    usage block first, which buries the message); exit code 2 as argparse."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _add_debug(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``--debug`` on the top-level parser and on every (sub)command, so it works on either side of the
    command; SUPPRESS keeps a subcommand from resetting a top-level ``--debug`` to False."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print the traceback of an error (for bug reports)",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                _add_debug(sub)


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 512M, 4G, 50GB)")
    mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from .config import PRESETS

    p = sub.add_parser(
        "synth",
        help="write a synthetic checkpoint in the exact release layout (or print its census)",
        description="Write a seeded synthetic DeepSeek-V4 checkpoint with the release's tensor names, "
        "dtypes (FP8 E4M3 + E8M0 block scales, packed FP4 experts, BF16, F32, I64), shards, index, "
        "config.json and the real tokenizer. With --dry-run, print the tensor/byte census instead "
        "(for 'flash' and 'pro' these are the published totals of the real checkpoints). The folder appears "
        "only when complete; a stopped run (Ctrl-C, killed, disk full) started again with the same arguments "
        "keeps the shards it finished in DIR.partial and writes the rest.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="tiny",
        help="model size (default: tiny; flash/pro are the real sizes, flash-slice full "
        "Flash widths with a few layers)",
    )
    src.add_argument("--config", metavar="JSON", help="use this config.json (HF or inference form) instead")
    p.add_argument("--out", metavar="DIR", help="output checkpoint folder (required unless --dry-run)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same bytes")
    p.add_argument(
        "--shard-size",
        type=_size,
        metavar="SIZE",
        help="largest shard, e.g. 4G (default: ~1/8 of the model, 32 MiB .. 4 GiB)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the census, write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(func=_run_synth)


def _run_synth(ns: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .config import load_config, preset
    from .layout import census
    from .synth import describe, write_synthetic

    args = load_config(ns.config) if ns.config else preset(ns.preset)
    name = ns.config or ns.preset
    if ns.dry_run:
        print(f"census of '{name}' (nothing written):")
        print(describe(args, ns.shard_size))
        return 0
    if not ns.out:
        print("dsv4-gguf synth: --out DIR is required (or use --dry-run)", file=sys.stderr)
        return 2
    total = census(args).nbytes
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"synth {name}", disable=None) as bar:
        path = write_synthetic(
            args, ns.out, seed=ns.seed, max_shard_bytes=ns.shard_size, overwrite=ns.overwrite, progress=bar.update
        )
    print(f"wrote {path}")
    print(describe(args, ns.shard_size))
    return 0


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="validate a checkpoint folder against the DeepSeek-V4 layout and print its census",
        description="Read config.json, the index and every shard header (no tensor data is read) and "
        "check every tensor's presence, dtype and shape against the layout its config implies.",
    )
    p.add_argument("checkpoint", metavar="DIR", help="checkpoint folder (config.json, index, safetensors shards)")
    p.set_defaults(func=_run_check)


def _run_check(ns: argparse.Namespace) -> int:
    from .checkpoint import Checkpoint
    from .layout import census

    with Checkpoint(ns.checkpoint) as ck:
        print(f"{ck.path}: OK ({len(ck.shard_names())} shards)")
        print(census(ck.args).format())
    return 0


def _add_ollama(sub: argparse._SubParsersAction) -> None:
    from .ollama import add_ollama_arguments, run_ollama

    p = sub.add_parser(
        "ollama",
        help="export a DeepSeek-V4 GGUF to Ollama (Modelfile + store install, or upload via its API)",
        description="Write a Modelfile (template, stop tokens, sampling defaults, license) and install the "
        "model into an Ollama models directory, or upload it through a running Ollama's HTTP API.",
    )
    add_ollama_arguments(p)
    p.set_defaults(func=run_ollama)


def _add_convert_family(sub: argparse._SubParsersAction) -> None:
    from .quantize import cli as qcli

    for name, help_, add, run in (
        (
            "convert",
            "convert a checkpoint folder to GGUF (SOURCE lossless, MXFP4_MOE, K-quant and IQ2 variants)",
            qcli.add_convert_arguments,
            qcli.run_convert,
        ),
        (
            "requantize",
            "turn a deepseek4 GGUF (ours or llama.cpp's) into another variant",
            qcli.add_requantize_arguments,
            qcli.run_requantize,
        ),
        (
            "verify",
            "compare every tensor of a GGUF with the checkpoint (bit-exact / error statistics)",
            qcli.add_verify_arguments,
            qcli.run_verify,
        ),
        (
            "inspect",
            "print arch, variant, tensor types, sizes, bits per weight and key metadata of a GGUF",
            qcli.add_inspect_arguments,
            qcli.run_inspect,
        ),
        (
            "imatrix",
            "collect an importance matrix (per routed expert) with the runtime; merge imatrix files",
            qcli.add_imatrix_arguments,
            qcli.run_imatrix,
        ),
    ):
        p = sub.add_parser(name, help=help_, description=help_)
        add(p)
        p.set_defaults(func=run)


def _add_sensitivity(sub: argparse._SubParsersAction) -> None:
    from .quantize import sensitivity as sens
    from .quantize.cli import add_sensitivity_arguments

    p = sub.add_parser(
        "sensitivity",
        help="KLD of each tensor class / layer's experts dropped to a low type: the importance file of a size target",
        description=sens.DESCRIPTION,
        epilog=sens.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_sensitivity_arguments(p)
    p.set_defaults(func=sens.run_sensitivity)


# ---------------------------------------------------------------------------------------------------
# dsv4-gguf run / chat (the C++ runtime, dsv4_gguf.runtime)


def _number(kind: type, ok: Any, need: str) -> Any:
    """argparse type: ``kind(text)`` that ``ok`` accepts; argparse names the option in the message."""

    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{need}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{need}, got {text!r}")
        return v

    return parse


_CTX = _number(int, lambda v: 0 < v <= MAX_CTX, f"must be the context length in tokens, 1 to {MAX_CTX}")
_THREADS = _number(int, lambda v: v >= 0, "must be a thread count, or 0 for all cores")
_MAX_TOKENS = _number(int, lambda v: v >= 0, "must be a token count (0 or more)")
_TEMPERATURE = _number(float, lambda v: 0 <= v < float("inf"), "must be 0 (greedy) or a positive number")
_TOP_P = _number(float, lambda v: 0 < v <= 1, "must be in (0, 1] (1 = no nucleus cut)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.gguf", help="deepseek4 GGUF (first shard of a split set)")
    p.add_argument("-t", "--threads", type=_THREADS, default=0, help="CPU threads (default: all cores)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N (CUDA backend)")
    p.add_argument("-c", "--ctx", type=_CTX, default=8192, help="context length of the session (default 8192)")
    p.add_argument(
        "--no-prefetch",
        dest="prefetch",
        action="store_false",
        default=None,
        help="keep loading lazy (default: map the whole file at load when it takes < 80%% of RAM)",
    )
    p.add_argument("-n", "--max-tokens", type=_MAX_TOKENS, default=256, help="tokens to generate (default 256)")
    p.add_argument(
        "--temperature", type=_TEMPERATURE, default=1.0, help="sampling temperature, 0 = greedy (default 1.0)"
    )
    p.add_argument("--top-p", type=_TOP_P, default=1.0, help="nucleus sampling, in (0, 1] (default 1.0)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument(
        "--speculative",
        choices=["mtp"],
        default=None,
        help="speculative decoding with the MTP draft block (needs the mtp-*.gguf sidecar next to the model); "
        "greedy output is identical to plain decoding, sampling keeps the model's distribution",
    )
    p.add_argument(
        "--draft",
        choices=["1", "2", "3", "auto"],
        default="1",
        help="draft tokens per verify step with --speculative: 1-3 (the MTP block, then applied to its own "
        "output) or auto (picks k, or plain decoding, by measured speed)",
    )
    p.add_argument(
        "--draft-head",
        choices=["q8_0", "q4_0", "model"],
        default="q8_0",
        help="output head the MTP block drafts with: a Q8_0 (default) or Q4_0 copy made on the first draft when "
        "smaller than the file's head (a BF16 head: half / a quarter of its bytes per draft), or the file's own",
    )
    p.add_argument(
        "--think",
        choices=["none", "high", "max"],
        default="none",
        help="thinking mode for chat prompts (Non-think, Think High, Think Max)",
    )


def _run_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("-p", "--prompt", required=True, help="prompt text (raw, no chat template unless --chat)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as one user message (DSV4 template)")


def _stats_line(st: runtime.GenerationStats) -> str:
    spec = (
        f" | speculative: {st.spec.accepted}/{st.spec.drafted} drafts accepted, {st.spec.plain} plain steps"
        if st.spec is not None
        else ""
    )
    return (
        f"[prefill {st.prompt_tokens} tok {st.prefill_tok_s:.1f} tok/s | decode {st.generated_tokens} tok "
        f"{st.decode_tok_s:.1f} tok/s{spec}]"
    )


def _generate_options(ns: argparse.Namespace) -> dict[str, Any]:
    """The Model.generate keywords of the run/chat options."""
    return {
        "max_tokens": ns.max_tokens,
        "temperature": ns.temperature,
        "top_p": ns.top_p,
        "seed": ns.seed,
        "thinking": _think(ns),
        "ctx": ns.ctx,
        "speculative": ns.speculative,
        "draft": ns.draft if ns.draft == "auto" else int(ns.draft),
    }


def _think(ns: argparse.Namespace) -> str | bool:
    return False if ns.think == "none" else ns.think


def _prompt_tokens(model: runtime.Model, prompt: Any, ns: argparse.Namespace) -> int:
    return len(model.encode(model.prompt(prompt, _think(ns))))


def _ctx_notice(ns: argparse.Namespace, st: runtime.GenerationStats) -> None:
    """Generation that ran into the end of the session's context (not EOS, not -n) says so."""
    if st.stop_reason == "ctx":
        print(
            f"dsv4-gguf {ns.command}: stopped at the context limit (-c/--ctx {ns.ctx} tokens) after "
            f"{len(st.tokens)} of {ns.max_tokens} tokens; raise -c to generate more",
            file=sys.stderr,
        )


def _usage(ns: argparse.Namespace, message: str) -> int:
    print(f"dsv4-gguf {ns.command}: error: {message}", file=sys.stderr)
    return 2


def _load_for_cli(ns: argparse.Namespace) -> runtime.Model | None:
    from . import runtime

    try:
        return runtime.load(
            ns.model, threads=ns.threads, device=ns.device, prefetch=ns.prefetch, draft_head=ns.draft_head
        )
    except (ValueError, RuntimeError) as e:  # GgufError is a ValueError; messages name the file and fix
        print(f"dsv4-gguf {ns.command}: error: {e}", file=sys.stderr)
        return None


def _cmd_run(ns: argparse.Namespace) -> int:
    if not ns.prompt and not ns.chat:
        return _usage(ns, "-p/--prompt is empty; give the text to continue, e.g. -p 'Once upon a time'")
    if ns.think != "none" and not ns.chat:
        return _usage(ns, "--think applies to chat prompts only; add --chat (a raw -p prompt is used as is)")
    model = _load_for_cli(ns)
    if model is None:
        return 1
    prompt: Any = [{"role": "user", "content": ns.prompt}] if ns.chat else ns.prompt
    n = _prompt_tokens(model, prompt, ns)
    if n > ns.ctx:
        print(
            f"dsv4-gguf run: error: the prompt is {n} tokens, more than the context of {ns.ctx} (-c/--ctx); "
            f"raise it, e.g. -c {n + ns.max_tokens}, or shorten the prompt",
            file=sys.stderr,
        )
        return 1
    for piece in model.generate(prompt, **_generate_options(ns)):
        print(piece, end="", flush=True)
    print()
    _ctx_notice(ns, model.last_stats)
    print(_stats_line(model.last_stats), file=sys.stderr)
    return 0


def _chat_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--system", default=None, help="system prompt")


def _cmd_chat(ns: argparse.Namespace) -> int:
    from .chat import parse_completion

    model = _load_for_cli(ns)
    if model is None:
        return 1
    messages: list[dict[str, Any]] = [{"role": "system", "content": ns.system}] if ns.system else []
    print("dsv4-gguf chat: empty line or Ctrl-D to quit", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        n = _prompt_tokens(model, messages, ns)
        if n > ns.ctx:  # the whole conversation is the prompt of each turn
            messages.pop()
            print(
                f"dsv4-gguf chat: error: with this message the conversation is {n} tokens, more than the context "
                f"of {ns.ctx} (-c/--ctx); the message was dropped: send a shorter one, or restart chat with a "
                f"larger -c (e.g. -c {n + ns.max_tokens})",
                file=sys.stderr,
            )
            continue
        pieces = []
        for piece in model.generate(messages, **_generate_options(ns)):
            pieces.append(piece)
            print(piece, end="", flush=True)
        print()
        _ctx_notice(ns, model.last_stats)
        print(_stats_line(model.last_stats), file=sys.stderr)
        text = "".join(pieces)
        try:
            msg = parse_completion(text + "<｜end▁of▁sentence｜>", thinking_mode="thinking" if _think(ns) else "chat")
            messages.append(
                {
                    "role": "assistant",
                    "content": msg.get("content", text),
                    "reasoning_content": msg.get("reasoning_content", ""),
                }
            )
        except Exception:  # noqa: BLE001 - keep chatting with the raw text when the reply does not parse
            messages.append({"role": "assistant", "content": text})
    return 0


def _add_runtime(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="generate from a prompt with the C++ runtime (prints prefill/decode tok/s)",
        description="Load a deepseek4 GGUF with the C++ runtime, generate from one prompt (raw, or as a user "
        "message with --chat), stream the text to stdout and print prefill/decode tokens/s to stderr.",
    )
    _run_arguments(p)
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser(
        "chat",
        help="interactive chat with the C++ runtime (think modes)",
        description="Interactive multi-turn chat with a deepseek4 GGUF in the C++ runtime, prompts encoded with "
        "the DSV4 chat template (--think: Non-think, Think High, Think Max); an empty line or Ctrl-D quits.",
    )
    _chat_arguments(p)
    p.set_defaults(func=_cmd_chat)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from .serve.cli import add_serve_arguments, run_serve

    p = sub.add_parser(
        "serve",
        help="HTTP server on the C++ runtime: OpenAI, Ollama and Anthropic APIs (needs the 'serve' extra)",
        description="Serve a deepseek4 GGUF over HTTP with OpenAI- (/v1/chat/completions, /v1/completions), "
        "Ollama- (/api/chat, /api/generate) and Anthropic-compatible (/v1/messages) endpoints: tool calls, "
        "thinking, a prompt cache and parallel slots.  Binds 127.0.0.1 unless --host says otherwise.",
    )
    add_serve_arguments(p)
    p.set_defaults(func=run_serve)


def _add_build_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-info",
        help="print the compiled features of the native core (SIMD, CUDA)",
        description="Print, as JSON, what the native core was built with and what it uses here: compiler, "
        "SIMD levels compiled and detected, the kernel level in use, CUDA support and visible devices.",
    )
    p.set_defaults(func=_run_build_info)


def _run_build_info(ns: argparse.Namespace) -> int:
    from . import build_info

    print(json.dumps(build_info(), indent=2, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dsv4-gguf",
        description="DeepSeek-V4 (Flash / Pro) checkpoints to GGUF: convert, quantize, run, evaluate, "
        "export to Ollama.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dsv4-gguf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_synth(sub)
    _add_check(sub)
    _add_ollama(sub)
    _add_convert_family(sub)
    _add_sensitivity(sub)
    from .eval.cli import add_eval_parser

    add_eval_parser(sub)
    _add_runtime(sub)
    _add_serve(sub)
    _add_build_info(sub)
    _add_debug(parser, top=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not getattr(ns, "func", None):
        parser.print_help()
        return 2
    try:
        return int(ns.func(ns) or 0)
    except KeyboardInterrupt:
        print(f"dsv4-gguf {ns.command}: interrupted", file=sys.stderr)
        return 130
    except UsageError as e:
        print(f"dsv4-gguf {ns.command}: error: {e}; see 'dsv4-gguf {ns.command} --help'", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as e:
        # handled: the library's messages name the file/tensor and the fix.  CheckpointError, ConfigError and
        # GgufError are ValueErrors, SynthError a RuntimeError; they are not imported here, because importing
        # dsv4_gguf.checkpoint loads ml_dtypes (~0.6 s) before every command's first output
        if ns.debug:
            traceback.print_exc()
        print(f"dsv4-gguf {ns.command}: error: {error_message(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a bug: still one line, the traceback on request
        if ns.debug:
            traceback.print_exc()
        print(
            f"dsv4-gguf {ns.command}: internal error: {type(e).__name__}: {e}; rerun with --debug for the "
            "traceback and report it",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
