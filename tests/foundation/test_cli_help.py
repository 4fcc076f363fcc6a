"""``dsv4-gguf --help`` documents everything: every (sub)command has a description, every argument and option has
help text, and an option named in a command's help exists on that command (llama-perplexity's own flags, quoted
as such, excepted)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from dsv4_gguf.cli import build_parser, main

# Options of other programs that help texts quote by name.
OTHER_PROGRAMS = {"--kl-divergence", "--kl-divergence-base"}  # llama-perplexity
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _parser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


COMMANDS = list(_commands(build_parser()))


def test_the_walk_sees_every_command():
    names = {" ".join(p) for p in COMMANDS}
    assert {"run", "chat", "check", "verify", "requantize", "inspect", "imatrix", "ollama", "build-info"} <= names
    assert {"eval kld", "eval mrcr", "eval swebench", "eval report"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "dsv4-gguf")
def test_command_help_describes_the_command_and_every_option(path, capsys):
    parser = _parser(path)
    assert parser.description and parser.description.strip(), f"'{parser.prog}' has no description"
    options = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        name = "/".join(action.option_strings) or action.metavar or action.dest
        if action.help == argparse.SUPPRESS:
            continue
        assert action.help and action.help.strip(), f"'{parser.prog}': {name} has no help text"
    texts = [parser.description] + [a.help for a in parser._actions if a.help and a.help != argparse.SUPPRESS]
    for text in texts:
        for opt in OPTION.findall(text):
            assert opt in options | OTHER_PROGRAMS, f"'{parser.prog}' help names {opt}, which it lacks: {text!r}"
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and " ".join(parser.description.split()[:4]) in " ".join(out.split())
