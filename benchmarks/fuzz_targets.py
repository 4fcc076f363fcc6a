"""Coverage-guided fuzz targets for the Python parsers, one per reader, and the driver that runs them.

Targets (``TARGETS``): ``safetensors`` (one shard's header + every tensor view), ``index`` (the
checkpoint index JSON next to a valid shard), ``gguf`` (GGUF header, split-set joining, tensor views,
``open_gguf``), ``imatrix`` (GGUF and legacy ``.dat`` forms), ``dsml`` (``chat.parse_completion``).
Each input may only end in the module's own error (CheckpointError, GGUFError, ImatrixError,
ChatFormatError); anything else is a crash.  Seeds are generated here from valid fixtures, never stored.

Run: ``python benchmarks/fuzz_targets.py TARGET --corpus DIR [--runs N] [--seconds S]``.  With
atheris installed the target modules are instrumented and libFuzzer drives them (its flags, final
stats); without it a plain random mutator runs the same target (not coverage-guided).  The C++ loader's
target is csrc/fuzz/gguf_loader_fuzz.cpp.
"""

from __future__ import annotations

import argparse
import atexit
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

_SCRATCH: Path | None = None


def scratch() -> Path:
    """A per-process directory for the files the readers open, on tmpfs when there is one (50x faster)."""
    global _SCRATCH
    if _SCRATCH is None:
        root = os.environ.get("DSV4_FUZZ_TMP") or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
        _SCRATCH = Path(tempfile.mkdtemp(prefix="dsv4-fuzz-", dir=root))
        atexit.register(shutil.rmtree, _SCRATCH, True)  # libFuzzer ends with exit(): atexit handlers run
    return _SCRATCH


def _write(name: str, data: bytes) -> Path:
    p = scratch() / name
    p.write_bytes(data)
    return p


def _touch(a: np.ndarray) -> None:
    """Read the first and last element of a view (a bad offset faults or raises here)."""
    if a.size:
        flat = a.reshape(-1)
        _ = flat[0], flat[-1]


# ---------------------------------------------------------------------------------------------------
# seeds (valid fixtures, built in memory)


def _safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.numpy import save

    return save(tensors, metadata=metadata)


def safetensors_seeds() -> list[bytes]:
    import ml_dtypes

    rng = np.random.default_rng(0)
    return [
        _safetensors_bytes(
            {"a.weight": rng.standard_normal((4, 8)).astype(np.float32), "b.bias": np.arange(3, dtype=np.int64)},
            {"format": "pt"},
        ),
        _safetensors_bytes(
            {
                "w": rng.standard_normal((2, 16)).astype(ml_dtypes.bfloat16),
                "w.scale": np.ones((1, 1), np.uint8),
                "e": np.zeros((0, 4), np.float16),
            }
        ),
        struct.pack("<Q", 19) + b'{"__metadata__":{}}',
    ]


def _gguf_bytes(kvs: list, tensors: list) -> bytes:
    from dsv4_gguf.gguf_io import write_plain

    p = scratch() / "seed.gguf"
    write_plain(p, kvs, tensors)
    return p.read_bytes()


def gguf_seeds() -> list[bytes]:
    from gguf import GGMLQuantizationType as Q

    from dsv4_gguf import quants
    from dsv4_gguf.gguf_io import KV, TensorEntry, split_kvs

    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    q8 = quants.quantize(x, Q.Q8_0)
    kvs = [
        KV("general.architecture", "str", "deepseek4"),
        KV("general.alignment", "u32", 32),
        KV("a.f", "f32", 1.5),
        KV("a.list", "i32[]", [1, 2, 3]),
        KV("a.strs", "str[]", ["x", "yz"]),
        KV("a.b", "bool", True),
        KV("a.u64", "u64", 7),
    ]
    tensors = [
        (TensorEntry("f32", (2, 64), Q.F32), x),
        (TensorEntry("q8", (2, 64), Q.Q8_0), q8),
        (TensorEntry("i32", (5,), Q.I32), np.arange(5, dtype=np.int32)),
    ]
    return [
        _gguf_bytes(kvs, tensors),
        _gguf_bytes(split_kvs(0, 2, 2), [(TensorEntry("a", (8,), Q.F32), np.ones(8, np.float32))]),
        _gguf_bytes(_deepseek4_kvs(), []),
    ]


def _deepseek4_kvs() -> list:
    """The metadata of a tiny deepseek4 model (so ``open_gguf`` reaches hyper-parameter parsing)."""
    from dsv4_gguf.config import PRESETS
    from dsv4_gguf.gguf_io import KV
    from dsv4_gguf.metadata import arch_kvs, general_kvs

    args = PRESETS["tiny"]
    kvs = general_kvs("tiny", 0, variant="F32") + arch_kvs(args, block_count=args.n_layers)
    return [*kvs, KV("tokenizer.ggml.tokens", "str[]", [f"t{i}" for i in range(4)])]


def _second_shard() -> bytes:
    """Shard 2 of 2 next to every ``gguf`` input, so inputs with split.count = 2 reach the joining code."""
    from gguf import GGMLQuantizationType as Q

    from dsv4_gguf.gguf_io import TensorEntry, split_kvs

    return _gguf_bytes(split_kvs(1, 2, 2), [(TensorEntry("b", (8,), Q.F32), np.zeros(8, np.float32))])


def imatrix_seeds() -> list[bytes]:
    from dsv4_gguf.quantize.imatrix import RawImatrix, write_imatrix

    raw = RawImatrix(
        sums={"blk.0.ffn_down.weight": np.ones((1, 8)), "blk.0.ffn_up_exps.weight": np.ones((2, 4))},
        counts={"blk.0.ffn_down.weight": np.array([3.0]), "blk.0.ffn_up_exps.weight": np.array([1.0, 0])},
        datasets=["wiki"],
        chunk_count=2,
        chunk_size=16,
        extra={"dsv4.fingerprint": "abc"},
    )
    p = scratch() / "seed.imatrix.gguf"
    write_imatrix(p, raw)
    name = b"blk.0.attn_q.weight"
    dat = (
        struct.pack("<ii", 1, len(name))
        + name
        + struct.pack("<ii", 2, 4)
        + np.arange(4, dtype="<f4").tobytes()
        + struct.pack("<ii", 5, 4)
        + b"wiki"
    )
    return [p.read_bytes(), dat]


def dsml_seeds() -> list[bytes]:
    from dsv4_gguf import chat

    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'}}
    calls = (
        chat.TOOL_CALLS_OPEN
        + chat._render_call(call)
        + "\n"
        + chat._render_call({"function": {"name": "noop", "arguments": "{}"}})
        + chat.TOOL_CALLS_CLOSE
        + chat.EOS
    )
    texts = [
        "Hello there." + chat.EOS,
        "Let me think." + chat.THINK_END + "The answer is 4." + chat.EOS,
        "Checking." + calls,
        "plan" + chat.THINK_END + "ok" + calls,
        "no end",
    ]
    # first byte: mode selector (see one_dsml)
    return [bytes([m]) + t.encode() for m in (0, 1, 2) for t in texts]


# ---------------------------------------------------------------------------------------------------
# targets: one input each; the module's own error is the only acceptable failure


def one_safetensors(data: bytes) -> None:
    from dsv4_gguf.checkpoint import CheckpointError, SafetensorsFile

    try:
        with SafetensorsFile(_write("x.safetensors", data)) as f:
            for name in f.keys():
                _touch(f.view(name))
    except CheckpointError:
        pass


_INDEX_DIR: Path | None = None


def one_index(data: bytes) -> None:
    from dsv4_gguf.checkpoint import INDEX_NAME, Checkpoint, CheckpointError
    from dsv4_gguf.config import PRESETS

    global _INDEX_DIR
    if _INDEX_DIR is None:
        _INDEX_DIR = scratch() / "ckpt"
        _INDEX_DIR.mkdir()
        (_INDEX_DIR / "model-00001-of-00001.safetensors").write_bytes(safetensors_seeds()[0])
    (_INDEX_DIR / INDEX_NAME).write_bytes(data)
    for validate in (False, True):
        try:
            with Checkpoint(_INDEX_DIR, validate=validate, args=PRESETS["tiny"]) as ck:
                for name in ck.names():
                    _touch(ck.view(name))
        except CheckpointError:
            pass


def index_seeds() -> list[bytes]:
    return [
        b'{"metadata": {"total_size": 152}, "weight_map": {"a.weight": "model-00001-of-00001.safetensors", '
        b'"b.bias": "model-00001-of-00001.safetensors"}}',
        b'{"weight_map": {"a.weight": "model-00001-of-00001.safetensors", "x": "other.safetensors"}}',
    ]


_GGUF_READY = False


def one_gguf(data: bytes) -> None:
    from dsv4_gguf.gguf_io import GGUFError, GGUFShards
    from dsv4_gguf.gguf_model import open_gguf

    global _GGUF_READY
    if not _GGUF_READY:
        _write("m-00002-of-00002.gguf", _second_shard())
        _GGUF_READY = True
    path = _write("m-00001-of-00002.gguf", data)
    try:
        g = GGUFShards(path)
        for name in g.names():
            _touch(g.raw(name))
    except GGUFError:
        return
    try:
        m = open_gguf(path, mtp=False)
        for name in m.names():
            m.info(name)
    except GGUFError:
        pass


def one_imatrix(data: bytes) -> None:
    from dsv4_gguf.quantize.imatrix import ImatrixError, load_imatrix

    try:
        load_imatrix(_write("x.imatrix", data))
    except ImatrixError:
        pass


def one_dsml(data: bytes) -> None:
    from dsv4_gguf.chat import ChatFormatError, parse_completion

    if not data:
        return
    mode = ("chat", "thinking")[data[0] & 1]
    text = data[1:].decode("utf-8", "replace")
    try:
        out = parse_completion(text, mode, require_eos=not data[0] & 2)
    except ChatFormatError:
        return
    assert isinstance(out["content"], str) and isinstance(out["tool_calls"], list)


def one_selftest(data: bytes) -> None:
    """Not a parser: proves the driver reports a raw exception as a crash (tests/hardening/test_fuzz_python.py)."""
    if data.startswith(b"boom"):
        raise IndexError("selftest crash")


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]]]] = {
    "safetensors": (one_safetensors, safetensors_seeds),
    "index": (one_index, index_seeds),
    "gguf": (one_gguf, gguf_seeds),
    "imatrix": (one_imatrix, imatrix_seeds),
    "dsml": (one_dsml, dsml_seeds),
    "selftest": (one_selftest, lambda: [b"ok", b"boom"]),
}
PARSERS = [t for t in TARGETS if t != "selftest"]
# modules instrumented for coverage under atheris
INSTRUMENT = [
    "dsv4_gguf.checkpoint",
    "dsv4_gguf.gguf_io",
    "dsv4_gguf.gguf_model",
    "dsv4_gguf.quantize.imatrix",
    "dsv4_gguf.metadata",
    "dsv4_gguf.chat",
]


def write_seeds(target: str, corpus: Path) -> int:
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = TARGETS[target][1]()
    for i, s in enumerate(seeds):
        (corpus / f"seed-{i:03d}").write_bytes(s)
    return len(seeds)


# ---------------------------------------------------------------------------------------------------
# drivers


def _mutate(b: bytearray, rng: random.Random) -> bytearray:
    interesting = [0, 1, 2, 7, 8, 31, 32, 63, 64, 255, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**62, 2**63, 2**64 - 1]
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(b)) if b else 0
        op = rng.randrange(6)
        if op == 0 and b:
            b[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[pos] = rng.randrange(256)
        elif op == 2:
            w = rng.choice((1, 2, 4, 8))
            v = rng.choice(interesting + [len(b)]) % (1 << (8 * w))
            b[pos : pos + w] = v.to_bytes(w, "little")
        elif op == 3:
            b[pos:pos] = bytes([rng.randrange(256)]) * rng.randint(1, 16)
        elif op == 4 and b:
            del b[pos : pos + rng.randint(1, 64)]
        elif op == 5 and b:
            del b[rng.randrange(len(b)) :]
    return b


def run_random(target: str, corpus: Path, runs: int, seconds: float, seed: int) -> int:
    """Not coverage-guided: replays the corpus, then mutates it until ``runs`` or ``seconds`` is reached."""
    one = TARGETS[target][0]
    inputs = [p.read_bytes() for p in sorted(corpus.iterdir()) if p.is_file()] or [b""]
    rng, t0, n = random.Random(seed), time.monotonic(), 0
    while n < len(inputs) or ((not runs or n < runs) and (not seconds or time.monotonic() - t0 < seconds)):
        data = inputs[n] if n < len(inputs) else bytes(_mutate(bytearray(rng.choice(inputs)), rng))
        try:
            one(data)
        except BaseException:
            crash = corpus.parent / f"crash-{target}-{n}"
            crash.write_bytes(data)
            print(f"CRASH on input saved to {crash}", file=sys.stderr)
            raise
        n += 1
    print(f"stat::number_of_executed_units: {n}")
    print(f"Done {n} runs in {time.monotonic() - t0:.0f} second(s)")
    return 0


def instrument() -> None:
    """Coverage instrumentation of the parser modules.  ``instrument_imports`` does not reach modules of an
    editable install (scikit-build-core's redirecting loader), so they are imported normally and every
    function of theirs (methods and nested functions included) is instrumented in place."""
    import importlib
    import inspect

    import atheris

    seen: set[int] = set()

    def visit(obj: object, owner: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if inspect.isfunction(obj) and obj.__module__ == owner:
            atheris.instrument_func(obj)
        elif inspect.isclass(obj) and obj.__module__ == owner:
            for v in vars(obj).values():
                visit(getattr(v, "__func__", v), owner)
                if isinstance(v, property):
                    for f in (v.fget, v.fset):
                        if f is not None:
                            visit(f, owner)

    for name in INSTRUMENT:
        mod = importlib.import_module(name)
        for v in list(vars(mod).values()):
            visit(v, name)


def run_atheris(target: str, corpus: Path, runs: int, seconds: float, seed: int, extra: list[str]) -> None:
    import atheris

    flags = [
        f"-seed={seed}",
        "-rss_limit_mb=3072",
        "-timeout=20",
        "-print_final_stats=1",
        "-max_len=65536",
        f"-artifact_prefix={corpus.parent}/crash-{target}-",
    ]
    if runs:
        flags.append(f"-runs={runs}")
    if seconds:
        flags.append(f"-max_total_time={int(seconds)}")
    atheris.Setup([sys.argv[0], *flags, *extra, str(corpus)], TARGETS[target][0])
    atheris.Fuzz()  # exits the process


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("--corpus", type=Path, required=True, help="corpus folder (seeded when empty)")
    ap.add_argument("--runs", type=int, default=0, help="stop after this many inputs (0: no limit)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: no limit)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    ap.add_argument("--seeds-only", action="store_true", help="write the seed corpus and exit")
    ap.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags (atheris), after --")
    a = ap.parse_args(argv)
    if a.corpus.exists() and not a.corpus.is_dir():
        ap.error(f"{a.corpus} is not a folder")
    engine = a.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "random"
    if engine == "atheris" and not a.seeds_only:
        instrument()
    if not a.corpus.is_dir() or not any(a.corpus.iterdir()):
        write_seeds(a.target, a.corpus)
    if a.seeds_only:
        return 0
    print(f"engine: {engine}", flush=True)
    if engine == "atheris":
        run_atheris(a.target, a.corpus, a.runs, a.seconds, a.seed, a.libfuzzer)
    return run_random(a.target, a.corpus, a.runs, a.seconds, a.seed)


if __name__ == "__main__":
    sys.exit(main())
