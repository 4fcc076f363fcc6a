"""A content-addressed cache of requantized tensors (``requantize --cache DIR``), for making several variants of
one model: a tensor the run would quantize to a grid i-quant is looked up by what determines its bytes.

The key is a BLAKE2b digest of the input tensor's stored bytes and type, its shape, the target type and the
importance-matrix slice the quantizer gets (exactly the arguments of the deterministic quantizer), plus the
package version.  Only the grid-search i-quants (IQ1_S .. IQ3_S) are kept: they run at 2-35 MB/s where the
K-quants run at 100-450 (benchmarks/RESULTS.md, "Quant kernels"), so a hit saves minutes per expert tensor and
the cache stays a few files.  An entry is ``MAGIC | 16-byte digest of the payload | payload``, written to a
temporary name and renamed; a read checks size and digest, and an entry that fails either is deleted and made
again.  Byte copies (target type = stored type) never touch the cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType

from .recipes import Planned

__all__ = ["CACHED_TYPES", "TensorCache"]

Q = GGMLQuantizationType
CACHED_TYPES = frozenset({Q.IQ1_S, Q.IQ1_M, Q.IQ2_XXS, Q.IQ2_XS, Q.IQ2_S, Q.IQ3_XXS, Q.IQ3_S})
MAGIC = b"DSV4TC01"
READ_BYTES = 64 << 20


def _digest_array(h: hashlib.blake2b, a: np.ndarray) -> None:
    """Feed ``a``'s bytes to ``h`` in 64 MB pieces (a memmap is read once, never copied whole)."""
    flat = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
    b = flat.view(np.uint8)
    for o in range(0, b.size, READ_BYTES):
        h.update(memoryview(b[o : o + READ_BYTES]))


class TensorCache:
    """Entries under ``root`` (created if missing).  ``hits`` / ``misses`` count this run's lookups."""

    def __init__(self, root: str | os.PathLike[str]):
        from dsv4_gguf import __version__

        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"--cache {self.root}: cannot create the folder ({e.strerror})") from None
        self.version = __version__
        self.hits = self.misses = 0

    def key(self, raw: np.ndarray, stored: GGMLQuantizationType, p: Planned, imatrix: np.ndarray | None) -> str:
        h = hashlib.blake2b(digest_size=20)
        head = f"{MAGIC.decode()}|{self.version}|{stored.name}|{p.qtype.name}|{tuple(p.tensor.shape)}|{p.nbytes}"
        h.update(head.encode())
        _digest_array(h, raw)
        if imatrix is None:
            h.update(b"|no-imatrix")
        else:
            im = np.ascontiguousarray(imatrix, dtype=np.float32)
            h.update(f"|imatrix{im.shape}".encode())
            _digest_array(h, im)  # NaN rows (experts never routed) hash by their bits, as the quantizer sees them
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.bin"

    def _read(self, path: Path, nbytes: int) -> Iterator[np.ndarray] | None:
        """The payload in 64 MB pieces when ``path`` is a whole entry of ``nbytes`` whose digest matches, else None
        (a bad entry is removed).  The digest is checked in a first pass, so no byte of a bad entry is handed on
        and memory stays at one piece."""
        try:
            with open(path, "rb") as f:
                head = f.read(len(MAGIC) + 16)
                if len(head) != len(MAGIC) + 16 or head[: len(MAGIC)] != MAGIC:
                    raise ValueError
                if os.fstat(f.fileno()).st_size != len(head) + nbytes:
                    raise ValueError
                h = hashlib.blake2b(digest_size=16)
                while b := f.read(READ_BYTES):
                    h.update(b)
                if h.digest() != head[len(MAGIC) :]:
                    raise ValueError
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            path.unlink(missing_ok=True)
            return None

        def pieces() -> Iterator[np.ndarray]:
            with open(path, "rb") as f:
                f.seek(len(MAGIC) + 16)
                while b := f.read(READ_BYTES):
                    yield np.frombuffer(b, np.uint8)

        return pieces()

    def wrap(
        self,
        make: Callable[..., Iterator[np.ndarray]],
        stored: Callable[[Planned], tuple[np.ndarray, GGMLQuantizationType]],
    ) -> Callable[..., Iterator[np.ndarray]]:
        """``make`` (a converter producer: ``make(p, imatrix=...)`` yields the tensor's bytes) with this cache in
        front; ``stored(p)`` gives the input tensor's raw array and stored type."""

        def cached(p: Planned, *, imatrix: np.ndarray | None = None) -> Iterator[np.ndarray]:
            if p.qtype not in CACHED_TYPES:
                yield from make(p, imatrix=imatrix)
                return
            raw, qt = stored(p)
            if qt == p.qtype:
                yield from make(p, imatrix=imatrix)
                return
            path = self.path(self.key(raw, qt, p, imatrix))
            got = self._read(path, p.nbytes)
            if got is not None:
                self.hits += 1
                yield from got
                return
            self.misses += 1
            yield from self._write_through(make(p, imatrix=imatrix), path, p.nbytes)

        return cached

    def _write_through(self, chunks: Iterator[np.ndarray], path: Path, nbytes: int) -> Iterator[np.ndarray]:
        """Yield ``chunks`` unchanged while copying them to a temporary entry; rename it into place when the
        tensor is complete (a failed or abandoned tensor leaves nothing).  A cache that cannot be written (disk
        full) is given up for this tensor: the output does not depend on it."""
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        h = hashlib.blake2b(digest_size=16)
        f = None
        try:
            try:
                f = open(tmp, "wb")
                f.write(MAGIC + b"\0" * 16)
            except OSError:
                f = None
            n = 0
            for c in chunks:
                b = memoryview(np.ascontiguousarray(c)).cast("B")
                n += len(b)
                if f is not None:
                    try:
                        f.write(b)
                        h.update(b)
                    except OSError:
                        f.close()
                        f = None
                        tmp.unlink(missing_ok=True)
                yield c
            if f is not None and n == nbytes:
                f.seek(len(MAGIC))
                f.write(h.digest())
                f.close()
                f = None
                os.replace(tmp, path)
        finally:
            if f is not None:
                f.close()
            tmp.unlink(missing_ok=True)
