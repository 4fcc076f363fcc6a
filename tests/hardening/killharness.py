"""Crash-consistency harness: run a writer in a child process and kill it at a chosen point.

Three kinds of kill point, all deterministic given the seed and a reference run of the same command:
``event``  SIGKILL just before the n-th filesystem mutation under the test folder (open for writing,
           rename/replace, unlink, truncate, mkdir, chmod; seen through a `sys.addaudithook` hook), so every
           step of a writer's commit protocol is hit without the writer's cooperation;
``bytes``  SIGKILL once n bytes have been written through Python file objects (all files together; the
           prefix of the crossing write is flushed first), i.e. mid-file at a byte offset;
``time``   SIGKILL from the parent t seconds after the start, t drawn between the reference run's first
           mutation and its end (catches whatever the other two cannot see, e.g. C++ or buffered work).
It does not judge the result: each test checks its writer's invariants on the state left behind.
Run as a script it is the child: ``python killharness.py ENTRY JSON_ARGS`` (ENTRY ``cli``, ``imatrix`` or
``demo``, the harness's own test writer).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
_AUDITED = {
    "os.rename",
    "os.remove",
    "os.truncate",
    "os.mkdir",
    "os.rmdir",
    "os.chmod",
    "os.link",
    "os.symlink",
    "shutil.copyfile",
    "shutil.rmtree",
}
REPORT_ENV = "DSV4_KILL_REPORT"  # optional: append one JSON line per kill (the numbers in the report)


@dataclass
class Ref:
    """What an uninterrupted run did: its mutations (kind, path, seconds after the start, bytes written
    before it), the bytes written in all and the duration."""

    events: list[tuple[str, str, float, int]]
    total_bytes: int
    duration: float

    @property
    def first_mutation(self) -> float:
        return self.events[0][2] if self.events else 0.0


@dataclass
class Outcome:
    point: tuple[str, float]
    rc: int
    wall: float
    log: list[str] = field(default_factory=list)

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL


# ---------------------------------------------------------------------------------------------
# parent side


def _child_env(root: Path, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "KILLH_ROOT": str(root.resolve()), "TQDM_DISABLE": "1"})
    env.pop("KILLH_EVENT", None)
    env.pop("KILLH_BYTES", None)
    env.update(extra)
    return env


def run(
    entry: str,
    args: Any,
    root: Path,
    *,
    kind: str | None = None,
    at: float = 0,
    log: Path | None = None,
    timeout: float = 300,
) -> Outcome:
    """Run the child once; ``kind``/``at`` choose the kill point (None: run to the end)."""
    extra: dict[str, str] = {}
    if kind == "event":
        extra["KILLH_EVENT"] = str(int(at))
    elif kind == "bytes":
        extra["KILLH_BYTES"] = str(int(at))
    if log is not None:
        extra["KILLH_LOG"] = str(log)
    t0 = time.time()
    extra["KILLH_T0"] = repr(t0)
    proc = subprocess.Popen(
        [sys.executable, str(HERE), entry, json.dumps(args)],
        env=_child_env(root, extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if kind == "time":
        try:
            proc.wait(timeout=at)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    out = Outcome((kind or "none", at), proc.returncode, time.time() - t0)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"writer {entry} {args} failed (rc {proc.returncode}):\n{err.decode()[-3000:]}")
    return out


def reference(entry: str, args: Any, root: Path) -> Ref:
    log = root / "killh-ref.log"
    out = run(entry, args, root, log=log)
    assert out.rc == 0
    events, total = [], 0
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if parts[0] == "E":
            events.append((parts[1], parts[2], float(parts[3]), int(parts[4])))
        elif parts[0] == "B":
            total = int(parts[1])
    log.unlink()
    return Ref(events, total, out.wall)


def points(ref: Ref, n_event: int, n_bytes: int, n_time: int, seed: int) -> list[tuple[str, float]]:
    """``n_event + n_bytes + n_time`` kill points: events spread evenly over the reference's mutations (all of
    them when there are fewer); byte offsets and times stratified-random (one per equal slice, seeded) over
    the bytes written and the period from the first mutation to 90% of the run."""
    rng = random.Random(seed)
    out: list[tuple[str, float]] = []
    n_ev = len(ref.events)
    picks = sorted({1 + round(j * (n_ev - 1) / max(1, n_event - 1)) for j in range(n_event)}) if n_ev else []
    out += [("event", float(k)) for k in picks]
    n_bytes += n_event - len(picks)  # fewer mutations than asked for: every one is a point, bytes get the rest
    out += [("bytes", float(max(1, int(ref.total_bytes * (j + rng.random()) / n_bytes)))) for j in range(n_bytes)]
    t0 = ref.first_mutation
    t1 = t0 + 0.9 * (ref.duration - t0)  # the last tenth is mostly interpreter exit
    out += [("time", t0 + (t1 - t0) * (j + rng.random()) / n_time) for j in range(n_time)]
    return out


def record(writer: str, out: Outcome, state: str) -> None:
    """Append the outcome to $DSV4_KILL_REPORT (if set): what the kill left at the final paths."""
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(
                json.dumps(
                    {
                        "writer": writer,
                        "kind": out.point[0],
                        "at": out.point[1],
                        "killed": out.killed,
                        "state": state,
                        "wall_s": round(out.wall, 3),
                    }
                )
                + "\n"
            )


# ---------------------------------------------------------------------------------------------
# child side


def _install(root: str, kill_event: int, kill_bytes: int, log_path: str | None, t0: float) -> None:
    import builtins
    import io

    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if log_path else -1
    state = {"events": 0, "bytes": 0}
    writable = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def under_root(p: Any) -> bool:
        if isinstance(p, int) or p is None:
            return False
        try:
            return os.path.abspath(os.fsdecode(p)).startswith(root + os.sep)
        except (TypeError, ValueError):
            return False

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            if not under_root(path):
                return
            if isinstance(mode, str):
                if not any(c in mode for c in "wax+"):
                    return
            elif not (flags or 0) & writable:
                return
        elif event in _AUDITED:
            if not under_root(args[0]):
                return
            path = args[0]
        else:
            return
        state["events"] += 1
        if state["events"] == kill_event:
            die()
        if log_fd >= 0:
            os.write(log_fd, f"E\t{event}\t{os.fsdecode(path)}\t{time.time() - t0:.6f}\t{state['bytes']}\n".encode())

    class Counted:
        """A writable file object that counts bytes and dies at the budget (after flushing the prefix)."""

        def __init__(self, f: Any) -> None:
            self._f = f

        def write(self, b: Any) -> int:
            n = len(b) if isinstance(b, str) else memoryview(b).nbytes
            if kill_bytes and state["bytes"] + n >= kill_bytes:
                k = kill_bytes - state["bytes"]
                self._f.write(b[:k] if isinstance(b, str) else memoryview(b).cast("B")[:k])
                self._f.flush()
                die()
            state["bytes"] += n
            return self._f.write(b)

        def writelines(self, lines: Any) -> None:
            for ln in lines:
                self.write(ln)

        def __enter__(self) -> Counted:
            self._f.__enter__()
            return self

        def __exit__(self, *a: Any) -> Any:
            return self._f.__exit__(*a)

        def __iter__(self) -> Any:
            return iter(self._f)

        def __getattr__(self, k: str) -> Any:
            return getattr(self._f, k)

    real_open = io.open

    def open_(file: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
        f = real_open(file, mode, *a, **kw)
        if (
            any(c in mode for c in "wax+")
            and under_root(file if not isinstance(file, int) else None)
            or isinstance(file, int)
            and any(c in mode for c in "wax+")
        ):
            return Counted(f)
        return f

    builtins.open = io.open = open_  # type: ignore[assignment]
    sys.addaudithook(hook)

    if log_fd >= 0:
        import atexit

        atexit.register(lambda: os.write(log_fd, f"B\t{state['bytes']}\n".encode()))


def imatrix_driver(args: dict[str, Any]) -> int:
    """`collect` on ready token chunks (the CLI would rebuild the 129k-token tokenizer in every child)."""
    import numpy as np
    from dsv4_gguf.quantize.imatrix_collect import collect

    chunks = list(np.load(args.pop("tokens")))
    collect(args.pop("model"), None, args.pop("out"), token_chunks=chunks, **args)
    return 0


def demo_writer(args: dict[str, Any]) -> int:
    """A writer for the harness's own test: 64 KiB blocks to ``path``, through a temp file + rename when
    ``atomic`` (the right way) or straight to the final name (what the checks must catch)."""
    final = Path(args["path"])
    target = final.with_name(final.name + ".tmp") if args["atomic"] else final
    with open(target, "wb") as f:
        for i in range(args["blocks"]):
            f.write(bytes([i % 251]) * 65536)
    if args["atomic"]:
        os.replace(target, final)
    return 0


def _child(entry: str, args: Any) -> int:
    env = os.environ
    _install(
        env["KILLH_ROOT"],
        int(env.get("KILLH_EVENT", 0)),
        int(env.get("KILLH_BYTES", 0)),
        env.get("KILLH_LOG"),
        float(env.get("KILLH_T0", time.time())),
    )
    if entry == "cli":
        from dsv4_gguf.cli import main

        return main(args)
    if entry == "imatrix":
        return imatrix_driver(args)
    if entry == "demo":
        return demo_writer(args)
    raise SystemExit(f"unknown entry {entry!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))
    sys.exit(_child(sys.argv[1], json.loads(sys.argv[2])))
