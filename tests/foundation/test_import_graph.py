"""The package's import graph has no circles: every `import` / `from ... import` of the package's own
modules, at module level or inside a function (a lazy import still ties the two modules together),
read with `ast` from the sources of dsv4_gguf, quantize (installed as dsv4_gguf.quantize) and eval
(dsv4_gguf.eval).  An import of a parent package is not an edge (a package's modules may use its
`__init__`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"dsv4_gguf": ROOT / "dsv4_gguf", "dsv4_gguf.quantize": ROOT / "quantize", "dsv4_gguf.eval": ROOT / "eval"}
ALIASES = ("quantize", "eval")  # the source trees import each other under their top-level names too


def _modules() -> dict[str, Path]:
    mods = {}
    for base, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([base, *parts])] = f
    return mods


def _targets(mod: str, is_pkg: bool, node: ast.AST, mods: dict[str, Path]) -> set[str]:
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = mod.split(".") if is_pkg else mod.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    out = set()
    for n in names:
        if n.split(".")[0] in ALIASES:
            n = "dsv4_gguf." + n
        while n and n not in mods:
            n = n.rpartition(".")[0]
        if n and n != mod and not mod.startswith(n + "."):
            out.add(n)
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_sees_a_lazy_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    tree = ast.parse("def f():\n    from .b import g\n")
    mods = {"p": Path("p"), "p.a": Path("a"), "p.b": Path("b")}
    assert _targets("p.a", False, tree.body[0].body[0], mods) == {"p.b"}


def test_no_import_cycles() -> None:
    mods = _modules()
    assert len(mods) > 40 and "dsv4_gguf.quantize.convert" in mods and "dsv4_gguf.eval.cli" in mods
    edges = {}
    for m, f in mods.items():
        tree = ast.parse(f.read_text(encoding="utf-8"))
        edges[m] = set().union(*(_targets(m, f.name == "__init__.py", n, mods) for n in ast.walk(tree)))
    assert edges["dsv4_gguf.quantize.convert"]  # the graph is not empty by a resolution bug
    assert _cycles(edges) == []


def _cli_wiring(tree: ast.AST) -> list[str]:
    """Calls that build a command line (parsers, subcommands, options) in a module's AST."""
    names = {"ArgumentParser", "add_parser", "add_argument", "add_subparsers", "add_mutually_exclusive_group"}
    return sorted(
        {
            n.func.attr if isinstance(n.func, ast.Attribute) else n.func.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
            and (
                (isinstance(n.func, ast.Attribute) and n.func.attr in names)
                or (isinstance(n.func, ast.Name) and n.func.id in names)
            )
        }
    )


def test_cli_wiring_only_in_cli_modules() -> None:
    """Options and subcommands are declared in the ``cli.py`` modules only; library modules take values."""
    assert _cli_wiring(ast.parse("p = argparse.ArgumentParser()\np.add_argument('-x')\n")) == [
        "ArgumentParser",
        "add_argument",
    ]
    wired = {m: f for m, f in _modules().items() if _cli_wiring(ast.parse(f.read_text(encoding="utf-8")))}
    assert "dsv4_gguf.cli" in wired and "dsv4_gguf.quantize.cli" in wired
    assert sorted(m for m, f in wired.items() if f.name != "cli.py") == []
