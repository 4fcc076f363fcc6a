"""`dsv4-gguf imatrix`: importance matrices collected with our C++ runtime, per routed expert.

Text is tokenized with the model's tokenizer, cut into chunks of ``--ctx`` tokens (BOS first, a fresh
session per chunk, as llama-imatrix) and run through the runtime with taps on every linear layer's
input; per GGUF weight the sum of squared activations per input column and the number of rows seen
are accumulated (per expert for ``ffn_*_exps``, from the router's choices).  Written in llama.cpp's
GGUF imatrix form (`imatrix.write_imatrix`).  The ``hc_*_fn`` mixers get the RMS-normalised flattened
streams (llama.cpp's graph multiplies ``rms_norm(flat)``).  Not collected: ``output.weight`` and
``token_embd`` (llama-imatrix skips them by default), the MTP block (not run by a prefill).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from .imatrix import ImatrixError, RawImatrix, load_imatrix_raw, write_imatrix

__all__ = [
    "TAPS",
    "Collector",
    "collect",
    "merge",
    "save_partial",
    "load_partial",
]

# tap of the runtime -> GGUF weights (leaf names inside blk.L) whose input it is
_INPUTS: dict[str, tuple[str, ...]] = {
    "attn_in": (
        "attn_q_a",
        "attn_kv",
        "attn_compressor_kv",
        "attn_compressor_gate",
        "indexer_compressor_kv",
        "indexer_compressor_gate",
        "indexer.proj",
    ),
    "qr": ("attn_q_b", "indexer.attn_q_b"),
    "wo_a_in": ("attn_output_a",),
    "wo_b_in": ("attn_output_b",),
    "ffn_in": ("ffn_gate_inp", "ffn_gate_shexp", "ffn_up_shexp"),
    "shexp_mid": ("ffn_down_shexp",),
    "hc_attn_x": ("hc_attn_fn",),
    "hc_ffn_x": ("hc_ffn_fn",),
}
_NORMED = ("hc_attn_x", "hc_ffn_x")  # taps whose rows are RMS-normalised (no weight) before the matmul
_ROUTED = {"ffn_in": ("ffn_gate_exps", "ffn_up_exps"), "exp_mid": ("ffn_down_exps",)}
TAPS = [f"layers.*.{t}" for t in (*_INPUTS, "exp_mid", "router_idx")]  # + the last block_out (output_hc_fn)
_TAP = re.compile(r"layers\.(\d+)\.(\w+)$")
FINGERPRINT_KEY = "dsv4.imatrix.fingerprint"


class Collector:
    """Accumulates the taps of one forward call into per-weight sums (float64) and counts."""

    def __init__(
        self, shapes: dict[str, tuple[int, ...]], raw: RawImatrix | None = None, n_layers: int = 0, eps: float = 1e-6
    ):
        self.shapes = shapes  # GGUF weight name -> numpy-order shape (experts first for stacked ones)
        self.raw = raw or RawImatrix()
        self.last, self.eps = n_layers - 1, eps

    def _slot(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        shape = self.shapes.get(name)
        if shape is None:
            return None
        if name not in self.raw.sums:
            n_mat = shape[0] if len(shape) == 3 else 1
            self.raw.sums[name] = np.zeros((n_mat, shape[-1]), np.float64)
            self.raw.counts[name] = np.zeros(n_mat, np.float64)
        return self.raw.sums[name], self.raw.counts[name]

    def add(self, taps: dict[str, np.ndarray]) -> None:
        for tap, x in taps.items():
            m = _TAP.match(tap)
            if not m or m.group(2) == "router_idx":
                continue
            layer, kind = m.group(1), m.group(2)
            x = np.asarray(x, np.float64)
            if kind in _NORMED or kind == "block_out":
                x = x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps)
            sq = x * x
            names = [f"blk.{layer}.{leaf}.weight" for leaf in _INPUTS.get(kind, ())]
            if kind == "block_out" and int(layer) == self.last:
                names = ["output_hc_fn.weight"]
            for name in names:
                slot = self._slot(name)
                if slot is not None:
                    self._check(name, slot[0], x)
                    slot[0][0] += sq.sum(0)
                    slot[1][0] += x.shape[0]
            leaves = _ROUTED.get(kind, ())
            if not leaves:
                continue
            ids = np.asarray(taps[f"layers.{layer}.router_idx"]).astype(np.int64)  # [T, K]
            if kind == "ffn_in":  # each token once per expert slot it was routed to
                rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
                src = sq[rows]
            else:  # exp_mid rows are the slots in (token, k) order
                src = sq
            flat = ids.reshape(-1)
            order = np.argsort(flat, kind="stable")  # group the rows by expert: one reduceat, no np.add.at
            experts, starts = np.unique(flat[order], return_index=True)
            grouped = np.add.reduceat(src[order], starts, axis=0) if flat.size else src[:0]
            for leaf in leaves:
                name = f"blk.{layer}.{leaf}.weight"
                slot = self._slot(name)
                if slot is None:
                    continue
                self._check(name, slot[0], x)
                sums, counts = slot
                if flat.size and (flat.min() < 0 or flat.max() >= sums.shape[0]):
                    raise ImatrixError(f"{tap}: router chose expert {int(flat.max())}, '{name}' has {sums.shape[0]}")
                sums[experts] += grouped
                counts += np.bincount(flat, minlength=sums.shape[0])

    @staticmethod
    def _check(name: str, sums: np.ndarray, x: np.ndarray) -> None:
        if x.shape[-1] != sums.shape[-1]:
            raise ImatrixError(f"'{name}': activations have {x.shape[-1]} columns, the weight {sums.shape[-1]}")


def _weights(model_path: Path) -> dict[str, tuple[int, ...]]:
    from dsv4_gguf.gguf_io import GGUFFile

    g = GGUFFile(model_path)
    leaves = {*(v for vs in _INPUTS.values() for v in vs), *(v for vs in _ROUTED.values() for v in vs)}
    return {
        n: t.shape
        for n, t in g.tensors.items()
        if n == "output_hc_fn.weight" or (n.startswith("blk.") and n.split(".", 2)[2].removesuffix(".weight") in leaves)
    }


def _metadata(model_path: Path) -> dict:
    from dsv4_gguf.gguf_io import GGUFFile

    return GGUFFile(model_path).metadata


def chunk_tokens(model, texts: Sequence[str], ctx: int, n_chunks: int = 0) -> list[np.ndarray]:  # noqa: ANN001
    """The token stream of all texts (in order), cut into chunks of ``ctx`` tokens that start with BOS."""
    if ctx < 2:
        raise ImatrixError(f"--ctx {ctx}: a chunk needs at least 2 tokens")
    ids: list[int] = []
    for t in texts:
        ids += model.encode(t)
    step = ctx - 1
    bos = model.tokenizer.bos_id
    out = [np.asarray([bos, *ids[i : i + step]], np.int32) for i in range(0, len(ids) - step + 1, step)]
    if not out:
        raise ImatrixError(
            f"the text has {len(ids)} tokens, fewer than one chunk of --ctx {ctx}; give more text or a smaller --ctx"
        )
    return out[:n_chunks] if n_chunks > 0 else out


def _fingerprint(model_path: Path, chunks: Sequence[np.ndarray], ctx: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    st = model_path.stat()
    h.update(f"{model_path.resolve()}|{st.st_size}|{ctx}|".encode())
    for c in chunks:
        h.update(c.tobytes())
    return h.hexdigest()


def collect(
    model_path: str | Path,
    texts: Sequence[str] | None,
    out: str | Path,
    *,
    ctx: int = 512,
    n_chunks: int = 0,
    batch: int = 128,
    threads: int = 0,
    datasets: Sequence[str] = (),
    resume: bool = False,
    save_every: int = 10,
    progress: Callable[[int, int], None] | None = None,
    stop_after: int | None = None,
    token_chunks: Sequence[np.ndarray] | None = None,
    exact: bool = False,
    qat: bool = True,
) -> RawImatrix:
    """Collect over ``texts`` (or ready ``token_chunks``) and write ``out``.  A partial file
    (``out + '.partial'``) is saved every ``save_every`` chunks; ``resume`` continues from it when it
    was made from the same model, tokens and ctx.  ``stop_after``: stop (partial file saved) after that
    many chunks of this call (tests).  ``exact``/``qat``: runtime options (parity tests).  ``progress(done, total)``
    once when the model, text and partial file are checked and the first chunk starts, then after each chunk."""
    from dsv4_gguf import runtime

    model_path, out = Path(model_path), Path(out)
    model = runtime.load(model_path, threads=threads, exact=exact, qat=qat)
    chunks = (
        [np.asarray(c, np.int32) for c in token_chunks]
        if token_chunks is not None
        else chunk_tokens(model, texts or [], ctx, n_chunks)
    )
    fp = _fingerprint(model_path, chunks, ctx)
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)  # before the work, not at the first save
    raw = RawImatrix(datasets=list(datasets), chunk_size=ctx, extra={FINGERPRINT_KEY: fp})
    if resume and partial.is_file():
        got = load_partial(partial)
        if got.extra.get(FINGERPRINT_KEY) != fp:
            raise ImatrixError(
                f"{partial}: made from another model, text or --ctx; delete it or rerun without --resume"
            )
        raw = got
    col = Collector(
        _weights(model_path),
        raw,
        n_layers=int(model.config["n_layers"]),
        eps=float(_metadata(model_path).get("deepseek4.attention.layer_norm_rms_epsilon", 1e-6)),
    )
    taps = [*TAPS, f"layers.{col.last}.block_out"]
    sess = model.session(ctx=max(ctx, max(len(c) for c in chunks)))
    if progress:  # the inputs are checked: the work starts
        progress(raw.chunk_count, len(chunks))
    done_here = 0
    for i in range(raw.chunk_count, len(chunks)):
        if stop_after is not None and done_here >= stop_after:
            save_partial(partial, raw)
            return raw
        sess.reset()
        c = chunks[i]
        for b0 in range(0, len(c), batch):  # bounded tap memory: taps are taken per batch
            sess.set_taps(taps)
            sess.prefill(c[b0 : b0 + batch])
            col.add(sess.take_taps())
        raw.chunk_count = i + 1
        done_here += 1
        if progress:
            progress(raw.chunk_count, len(chunks))
        if save_every > 0 and raw.chunk_count % save_every == 0 and raw.chunk_count < len(chunks):
            save_partial(partial, raw)
    sess.set_taps([])
    raw.extra = {}
    write_imatrix(out, raw)
    partial.unlink(missing_ok=True)
    partial.with_name(partial.name + ".tmp").unlink(missing_ok=True)  # a save that a kill cut short
    return raw


_EXACT = "_f64"  # suffix of the float64 copies of ``in_sum2`` / ``counts`` in a partial file


def save_partial(path: Path, raw: RawImatrix) -> None:
    """The running state: llama.cpp's imatrix form (F32, readable as any imatrix file) plus the float64 sums
    and counts as ``<name>.in_sum2_f64`` / ``.counts_f64``, so a resumed run continues from exactly the state
    an uninterrupted one had and writes the same bytes (from the F32 copies the sums would be rounded).
    Temp file + rename, as `write_imatrix`."""
    from gguf import GGMLQuantizationType as Q

    from dsv4_gguf.gguf_io import KV, TensorEntry, write_plain

    kvs = [
        KV("general.type", "str", "imatrix"),
        KV("imatrix.datasets", "str[]", list(raw.datasets)),
        KV("imatrix.chunk_count", "u32", int(raw.chunk_count)),
        KV("imatrix.chunk_size", "u32", int(raw.chunk_size)),
    ]
    kvs += [KV(k, "str", v) for k, v in sorted(raw.extra.items())]
    ts = []
    for name in sorted(raw.sums):
        s, c = np.ascontiguousarray(raw.sums[name], np.float64), np.ascontiguousarray(raw.counts[name], np.float64)
        for leaf, a in ((".in_sum2", s), (".counts", c.reshape(-1, 1))):
            ts += [
                (TensorEntry(name + leaf, a.shape, Q.F32), a.astype(np.float32)),
                (TensorEntry(name + leaf + _EXACT, a.shape, Q.F64), a),
            ]
    tmp = path.with_name(path.name + ".tmp")
    write_plain(tmp, kvs, ts)
    tmp.replace(path)


def load_partial(path: Path) -> RawImatrix:
    """A partial file with its exact float64 state (a plain imatrix file: its F32 values)."""
    from dsv4_gguf.gguf_io import GGUFFile

    raw = load_imatrix_raw(path)
    g = GGUFFile(path)
    for name in raw.sums:
        s, c = name + ".in_sum2" + _EXACT, name + ".counts" + _EXACT
        if s in g.tensors and c in g.tensors:
            raw.sums[name] = np.array(g.raw(s), np.float64).reshape(raw.sums[name].shape)
            raw.counts[name] = np.array(g.raw(c), np.float64).reshape(raw.counts[name].shape)
    return raw


def merge(paths: Iterable[str | Path], out: str | Path) -> RawImatrix:
    """Sum the sums and counts of several imatrix files (GGUF or legacy .dat), as llama-imatrix --in-file."""
    acc = RawImatrix()
    for p in paths:
        r = load_imatrix_raw(p)
        for name, s in r.sums.items():
            if name in acc.sums:
                if acc.sums[name].shape != s.shape:
                    raise ImatrixError(
                        f"{p}: '{name}' has shape {s.shape}, earlier files {acc.sums[name].shape}; "
                        f"the files come from different models"
                    )
                acc.sums[name] += s
                acc.counts[name] += r.counts[name]
            else:
                acc.sums[name], acc.counts[name] = s.copy(), r.counts[name].copy()
        acc.datasets += [d for d in r.datasets if d not in acc.datasets]
        acc.chunk_count += r.chunk_count
        acc.chunk_size = acc.chunk_size or r.chunk_size
    write_imatrix(out, acc)
    return acc
