"""Single-pass checkpoint -> GGUF conversion: plan, stream, journal, resume, atomic rename.

`make_plan` fixes every output file's header (KVs + tensor infos, hence every data offset) before any
tensor is read.  `convert` then streams the tensors in plan order: a producer thread reads and
quantizes (the kernels use all cores) while the main thread writes, so memory holds a few chunks.
Each file is written as ``<final>.partial`` with a ``.journal`` of finished tensors and their BLAKE2b
digests; ``resume=True`` re-hashes what the journal claims, keeps the verified prefix and continues,
producing the same bytes as an uninterrupted run.  Final names appear only when every file is done, the
first file last; ``resume`` accepts files an interrupted run had already renamed (checked, not rewritten).
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dsv4_gguf.checkpoint import Checkpoint
from dsv4_gguf.config import ModelArgs
from dsv4_gguf.constants import MTP_FILE_PREFIX
from dsv4_gguf.gguf_io import KV, TensorEntry, encode_header, split_groups, split_kvs, split_paths
from dsv4_gguf.metadata import arch_kvs, general_kvs, tokenizer_kvs
from dsv4_gguf.names import MAIN, MTP, gguf_tensors
from dsv4_gguf.templates import jinja_template

from .imatrix import imatrix_for
from .produce import RawReader, produce
from .recipes import Planned, Recipe, plan_types

__all__ = ["ConvertError", "OutFile", "Plan", "make_plan", "convert", "tensor_imatrix", "PARTIAL", "JOURNAL"]

PARTIAL, JOURNAL = ".partial", ".partial.journal"
SPACE_MARGIN = 64 << 20


class ConvertError(RuntimeError):
    """Conversion cannot start or failed; the message names the file/tensor and what to do."""


@dataclass
class OutFile:
    path: Path
    kvs: list[KV]
    entries: list[Planned]
    header: bytes = b""
    offsets: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        if not self.entries:
            return len(self.header)
        last = self.entries[-1]
        return self.offsets[-1] + last.nbytes + (-last.nbytes % 32)

    def finalize(self) -> None:
        ents = [TensorEntry(p.tensor.name, p.tensor.shape, p.qtype) for p in self.entries]
        self.header, self.offsets = encode_header(self.kvs, ents)


@dataclass
class Plan:
    args: ModelArgs
    recipe: Recipe
    files: list[OutFile]

    @property
    def entries(self) -> list[Planned]:
        return [p for f in self.files for p in f.entries]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def make_plan(
    args: ModelArgs,
    recipe: Recipe,
    out: Path,
    *,
    ckpt_dir: Path | None,
    name: str = "DeepSeek-V4",
    overrides: list | None = None,
    mtp: bool = True,
    split_max_size: int = 0,
    split_max_tensors: int = 0,
    only: re.Pattern[str] | None = None,
    extra_kvs: tuple[KV, ...] = (),
) -> Plan:
    """``extra_kvs``: further keys of the main file after ``general.*`` (``--target-size`` writes ``dsv4.recipe``)."""

    tensors = gguf_tensors(args, mtp=mtp)
    planned = plan_types(recipe, tensors, args, overrides)
    if only is not None:
        planned = [p for p in planned if only.search(p.tensor.name)]
    tok = tokenizer_kvs(ckpt_dir, args.vocab_size, chat_template=jinja_template())
    main = [p for p in planned if p.tensor.file == MAIN]
    files: list[OutFile] = []
    base = general_kvs(name, recipe.file_type, variant=recipe.name) + list(extra_kvs)
    main_kv = base + arch_kvs(args, block_count=args.n_layers) + tok
    groups = split_groups(
        [TensorEntry(p.tensor.name, p.tensor.shape, p.qtype) for p in main], split_max_size, split_max_tensors
    )
    paths = split_paths(out, len(groups))
    for i, (g, p) in enumerate(zip(groups, paths, strict=True)):
        kv = (main_kv if i == 0 else []) + (split_kvs(i, len(groups), len(main)) if len(groups) > 1 else [])
        files.append(OutFile(p, kv, [main[j] for j in g]))
    side = [p for p in planned if p.tensor.file == MTP]
    if side:
        kv = (
            general_kvs(f"{name} MTP", recipe.file_type, variant=recipe.name)
            + arch_kvs(args, block_count=args.n_blocks, nextn=args.n_mtp_layers)
            + tok
        )
        files.append(OutFile(out.with_name(MTP_FILE_PREFIX + out.name), kv, side))
    for f in files:
        f.finalize()
    return Plan(args, recipe, files)


# ---------------------------------------------------------------------------------------------


def _prefetch(it: Iterator, depth: int = 3) -> Iterator:
    """Run ``it`` in a thread, ``depth`` items ahead (reading + quantizing overlaps the writes)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(x: object) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer is gone

    def run() -> None:
        try:
            for x in it:
                if not put(x):
                    return
            put(done)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            put(e)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        while True:
            x = q.get()
            if x is done:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        th.join()


def _journal_entries(path: Path) -> list[tuple[int, int, str]]:
    out = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return out
    for ln in lines:
        parts = ln.split()
        if len(parts) != 4:
            break
        try:
            out.append((int(parts[0]), int(parts[2]), parts[3]))
        except ValueError:
            break
    return out


def _verified_prefix(f: OutFile, tmp: Path, jpath: Path) -> int:
    """How many leading tensors of ``tmp`` are intact (header equal to the plan, digests match the journal)."""
    if not tmp.is_file():
        return -1
    with open(tmp, "rb") as fh:
        if fh.read(len(f.header)) != f.header:
            return -1  # another plan (variant, options, checkpoint config): start over
        n = 0
        for (i, nbytes, digest), p, off in zip(_journal_entries(jpath), f.entries, f.offsets, strict=False):
            if i != n or nbytes != p.nbytes:
                break
            fh.seek(off)
            h = hashlib.blake2b(digest_size=16)
            left = nbytes
            while left:
                b = fh.read(min(left, 16 << 20))
                if not b:
                    break
                h.update(b)
                left -= len(b)
            if left or h.hexdigest() != digest:
                break
            n += 1
    return n


def convert(
    plan: Plan,
    source: Checkpoint | Any,
    *,
    resume: bool = False,
    overwrite: bool = False,
    imatrix: dict[str, np.ndarray] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    on_tensor: Callable[[str], None] | None = None,
    make: Callable[..., Iterator] | None = None,
) -> list[Path]:
    """Write every file of ``plan`` from ``source``; returns the final paths.  A `Checkpoint` source is read
    here; any other source (requantize's `GGUFModel`) comes with ``make(planned, imatrix=...)``, the
    producer of each tensor's bytes (`requantize.produce_from_gguf` bound to the model).
    ``progress(bytes, tensors_done, name)``: ``bytes`` sum to ``plan.total_bytes`` (headers and padding
    included) and ``tensors_done`` counts over all files, up to ``len(plan.entries)``.  ``on_tensor(name)``
    runs after each finished tensor (tests use it to simulate an interruption)."""
    finished = [resume and not overwrite and _finished(f) for f in plan.files]
    for f, done in zip(plan.files, finished, strict=True):
        if f.path.exists() and not overwrite and not done:
            raise ConvertError(
                f"{f.path}: already exists; choose another -o or pass --overwrite"
                + ("" if resume else " (or --resume if an earlier run was interrupted)")
            )
        f.path.parent.mkdir(parents=True, exist_ok=True)
    starts = []
    for f, done in zip(plan.files, finished, strict=True):
        tmp, jp = Path(str(f.path) + PARTIAL), Path(str(f.path) + JOURNAL)
        starts.append(len(f.entries) if done else _verified_prefix(f, tmp, jp) if resume else -1)
    need = 0
    for f, s in zip(plan.files, starts, strict=True):
        need += f.size - (f.offsets[s] if 0 < s < len(f.entries) else (f.size if s == len(f.entries) else 0))
    parent = plan.files[0].path.parent
    free = shutil.disk_usage(parent).free
    if free < need + SPACE_MARGIN:
        raise ConvertError(
            f"{parent}: {free:,} bytes free but the conversion needs {need:,} more "
            f"(+{SPACE_MARGIN >> 20} MiB margin); free space or choose another -o"
        )
    if isinstance(source, Checkpoint):
        rd = RawReader(source)
        make = partial(produce, rd=rd)
        close = rd.close
    elif make is None:
        raise TypeError("convert: a source other than a Checkpoint needs make= (its tensor producer)")
    else:
        close = None
    try:
        before = 0  # tensors of the earlier files: progress counts over the whole plan, sidecar included
        for f, s, done in zip(plan.files, starts, finished, strict=True):
            if done:
                if progress:
                    progress(f.size, before + len(f.entries), f.path.name)
            else:
                _write_file(f, s, make, imatrix, _offset(progress, before), on_tensor)
            before += len(f.entries)
    finally:
        if close:
            close()
    # Every file is complete: the final names appear, the first file (the one users open) last, so its
    # presence means the whole set is there.  Journals go only after every rename: until then a killed
    # run's --resume can still check a renamed file against its digests (`_finished`).
    for f, done in reversed(list(zip(plan.files, finished, strict=True))):
        if not done:
            os.replace(str(f.path) + PARTIAL, f.path)
    for f in plan.files:
        Path(str(f.path) + JOURNAL).unlink(missing_ok=True)
        Path(str(f.path) + JOURNAL + ".tmp").unlink(missing_ok=True)
    return [f.path for f in plan.files]


def _offset(progress: Callable[[int, int, str], None] | None, before: int) -> Callable[[int, int, str], None] | None:
    """``progress`` with the tensor count of one file shifted by the ``before`` tensors of the files before it."""
    if progress is None:
        return None
    return lambda nbytes, done, name: progress(nbytes, before + done, name)


def _finished(f: OutFile) -> bool:
    """``f`` is already complete at its final path (an earlier run got as far as renaming it): header and
    size as planned, and every tensor's digest matches while the run's journal is still there."""
    if not f.path.is_file() or f.path.stat().st_size != f.size:
        return False
    jp = Path(str(f.path) + JOURNAL)
    if not jp.is_file():
        with open(f.path, "rb") as fh:
            return fh.read(len(f.header)) == f.header
    return _verified_prefix(f, f.path, jp) == len(f.entries)


def tensor_imatrix(p: Planned, imatrix: dict[str, np.ndarray] | None) -> np.ndarray | None:
    """The ``imatrix=`` that `convert` gives the producer (``make(p, imatrix=...)``) for one planned tensor
    (sensitivity.scan produces a probe's tensors the same way without writing a file)."""
    t = p.tensor
    return imatrix_for(imatrix, t.name, t.shape[0] if t.assemble == "stack" else 1, t.shape[-1], unseen_nan=True)


def _write_file(f: OutFile, start: int, make: Callable, imatrix, progress, on_tensor) -> None:
    tmp, jp = Path(str(f.path) + PARTIAL), Path(str(f.path) + JOURNAL)
    if start < 0:
        with open(tmp, "wb") as fh:
            fh.write(f.header)
        jp.write_text("")
        start = 0
        if progress:  # the header (metadata, tokenizer) is part of the planned bytes
            progress(len(f.header), 0, f.path.name)
    else:
        keep = f.offsets[start] if start < len(f.entries) else f.size
        with open(tmp, "r+b") as fh:
            fh.truncate(keep)
        ents = _journal_entries(jp)[:start]
        jtmp = Path(str(jp) + ".tmp")  # replaced, not rewritten: a kill here must not lose the verified prefix
        jtmp.write_text("".join(f"{i} {f.entries[i].tensor.name} {n} {d}\n" for i, n, d in ents))
        os.replace(jtmp, jp)
        if progress:
            progress(keep, start, "resumed")
    todo = list(range(start, len(f.entries)))

    def chunks() -> Iterator[tuple[int, np.ndarray | None]]:
        for i in todo:
            p = f.entries[i]
            t = p.tensor
            im = tensor_imatrix(p, imatrix)
            try:
                for c in make(p, imatrix=im):
                    yield i, c
            except (ValueError, OSError) as e:
                raise ConvertError(f"tensor '{t.name}' (from '{t.sources[0]}'): {e}") from e
            yield i, None

    try:
        with open(tmp, "r+b") as fh, open(jp, "a") as jf:
            cur, h, written = -1, hashlib.blake2b(digest_size=16), 0
            for i, c in _prefetch(chunks()):
                p = f.entries[i]
                if i != cur:
                    cur, h, written = i, hashlib.blake2b(digest_size=16), 0
                    fh.seek(f.offsets[i])
                if c is None:
                    if written != p.nbytes:
                        raise ConvertError(
                            f"internal: tensor '{p.tensor.name}' produced {written} bytes, planned {p.nbytes}"
                        )
                    fh.write(b"\0" * (-written % 32))
                    fh.flush()
                    jf.write(f"{i} {p.tensor.name} {written} {h.hexdigest()}\n")
                    jf.flush()
                    if progress:
                        progress(-written % 32, i + 1, p.tensor.name)
                    if on_tensor:
                        on_tensor(p.tensor.name)
                    continue
                b = memoryview(np.ascontiguousarray(c)).cast("B")
                fh.write(b)
                h.update(b)
                written += len(b)
                if progress:
                    progress(len(b), i, p.tensor.name)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before its final name can appear
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise ConvertError(
                f"{tmp}: disk full while writing; free space and rerun with --resume (finished tensors are kept)"
            ) from None
        raise ConvertError(f"{tmp}: write failed ({e}); rerun with --resume") from None
