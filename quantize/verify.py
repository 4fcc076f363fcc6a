"""`dsv4-gguf verify OUT.gguf --against CHECKPOINT_DIR`: every GGUF tensor against the checkpoint.

Each tensor is dequantized from the GGUF and compared with the checkpoint's dequantized tensor (one
expert at a time, so memory stays bounded).  "exact" means bit-identical float32 values with -0 and +0
treated as equal: ggml's MXFP4 table decodes the E2M1 code for -0 as +0.  For MXFP4 tensors the stored
nibbles and E8M0 bytes are additionally compared with the checkpoint's FP4 bytes (``storage_exact``).
Lossy tensors report RMSE, relative RMSE and max |error|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType

from dsv4_gguf.checkpoint import Checkpoint
from dsv4_gguf.gguf_model import GGUFModel, dequantize_raw
from dsv4_gguf.names import GTensor

__all__ = ["TensorReport", "check_same_model", "to_verify", "verify", "mxfp4_to_fp4", "format_report"]

Q = GGMLQuantizationType


@dataclass
class TensorReport:
    name: str
    qtype: str
    exact: bool
    storage_exact: bool | None
    rmse: float
    rel_rmse: float
    max_abs: float
    n: int


def mxfp4_to_fp4(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of the repack: MXFP4 bytes [rows, nb*17] -> (FP4 packed [rows, nb*16], E8M0 [rows, nb])."""
    rows = blocks.shape[0]
    b = blocks.reshape(rows, -1, 17)
    e, qs = b[:, :, 0], b[:, :, 1:]
    codes = np.concatenate([qs & 0xF, qs >> 4], axis=2)  # element j (low) and j+16 (high)
    packed = (codes[:, :, 0::2] | (codes[:, :, 1::2] << 4)).astype(np.uint8)
    return packed.reshape(rows, -1), np.ascontiguousarray(e)


def _stats(name: str, q: GGMLQuantizationType, got: np.ndarray, ref: np.ndarray) -> TensorReport:
    if ref.dtype == np.int64 or got.dtype == np.int64:
        ok = bool(np.array_equal(got, ref))
        return TensorReport(name, q.name, ok, None, 0.0 if ok else float("nan"), 0.0, 0.0, ref.size)
    got, ref = np.asarray(got, np.float32), np.asarray(ref, np.float32)
    # equal values (so -0 == +0) and identical bits for every non-zero value (catches NaN payloads too)
    exact = bool(np.array_equal(got.view(np.uint32), ref.view(np.uint32))) or bool(
        np.array_equal(
            np.where(got == 0, np.float32(0), got).view(np.uint32),
            np.where(ref == 0, np.float32(0), ref).view(np.uint32),
        )
    )
    if exact:
        return TensorReport(name, q.name, True, None, 0.0, float(np.dot(ref.ravel(), ref.ravel())), 0.0, ref.size)
    d = got.astype(np.float64) - ref.astype(np.float64)
    se = float(np.sum(d * d))
    sr = float(np.sum(ref.astype(np.float64) ** 2))
    n = ref.size
    return TensorReport(name, q.name, exact, None, se, sr, float(np.max(np.abs(d))) if n else 0.0, n)


def _merge(a: TensorReport | None, b: TensorReport) -> TensorReport:
    if a is None:
        return b
    return TensorReport(
        a.name,
        a.qtype,
        a.exact and b.exact,
        a.storage_exact,
        a.rmse + b.rmse,
        a.rel_rmse + b.rel_rmse,
        max(a.max_abs, b.max_abs),
        a.n + b.n,
    )


def _finish(r: TensorReport) -> TensorReport:
    se, sr = r.rmse, r.rel_rmse
    r.rmse = float(np.sqrt(se / max(r.n, 1)))
    r.rel_rmse = float(np.sqrt(se / sr)) if sr > 0 else (0.0 if se == 0 else float("inf"))
    return r


def verify_tensor(m: GGUFModel, ck: Checkpoint, t: GTensor) -> TensorReport:
    info = m.info(t.name, t.file)
    raw = m.raw(t.name, t.file)
    q = info.qtype
    if t.assemble == "stack":
        rep: TensorReport | None = None
        storage = q == Q.MXFP4 and t.kind == "fp4"
        for e, src in enumerate(t.sources):
            one = _stats(t.name, q, dequantize_raw(raw[e], q), ck.dequantize(src))
            rep = _merge(rep, one)
            if storage:
                packed, e8 = mxfp4_to_fp4(np.asarray(raw[e]))
                sname = src[: -len(".weight")] + ".scale"
                storage = np.array_equal(packed, ck.view(src).view(np.uint8)) and np.array_equal(
                    e8, ck.view(sname).view(np.uint8)
                )
        assert rep is not None
        rep.storage_exact = storage if q == Q.MXFP4 and t.kind == "fp4" else None
        return _finish(rep)
    got = dequantize_raw(raw, q)
    if t.assemble == "cols":
        ref = np.concatenate([ck.dequantize(s) for s in t.sources], axis=1)
    else:
        ref = ck.dequantize(t.sources[0])
    return _finish(_stats(t.name, q, got.reshape(ref.shape), ref))


def check_same_model(m: GGUFModel, ck: Checkpoint) -> None:
    """ValueError unless the GGUF was converted from a checkpoint with ``ck``'s hyper-parameters."""
    if (
        m.args.replace(
            n_mtp_layers=ck.args.n_mtp_layers,
            compress_ratios=ck.args.compress_ratios,
            expert_dtype=ck.args.expert_dtype,
        )
        != ck.args
    ):
        raise ValueError(
            f"{m.path}: the GGUF's hyper-parameters do not match {ck.path}/config.json; "
            f"verify against the checkpoint it was converted from"
        )


def to_verify(m: GGUFModel, only=None) -> list[GTensor]:  # noqa: ANN001
    """The tensors ``verify`` compares (``only``: a regex on the GGUF name)."""
    return [t for t in m.gtensors() if only is None or only.search(t.name)]


def verify(m: GGUFModel, ck: Checkpoint, *, only=None, progress=None) -> list[TensorReport]:
    """Every tensor of ``to_verify(m, only)`` against ``ck``.  ``progress(bytes, tensors_done, name)`` after each
    tensor, as ``convert``'s: ``bytes`` is the tensor's size in the GGUF."""
    check_same_model(m, ck)
    out = []
    for t in to_verify(m, only):
        out.append(verify_tensor(m, ck, t))
        if progress:
            progress(m.info(t.name, t.file).nbytes, len(out), t.name)
    return out


def format_report(reps: list[TensorReport], *, verbose: bool = False) -> str:
    lines = []
    if verbose:
        lines.append(f"{'tensor':<44} {'type':<8} {'exact':<6} {'rel_rmse':>10} {'max_abs':>10}")
        for r in reps:
            lines.append(f"{r.name:<44} {r.qtype:<8} {str(r.exact):<6} {r.rel_rmse:>10.3e} {r.max_abs:>10.3e}")
    by: dict[str, list[TensorReport]] = {}
    for r in reps:
        by.setdefault(r.qtype, []).append(r)
    lines.append(
        f"{'type':<8} {'tensors':>7} {'exact':>6} {'storage':>8} {'rel_rmse(mean)':>15} {'rel_rmse(max)':>14} "
        f"{'max_abs':>10}"
    )
    for q, rs in sorted(by.items()):
        st = [r.storage_exact for r in rs if r.storage_exact is not None]
        lines.append(
            f"{q:<8} {len(rs):>7} {sum(r.exact for r in rs):>6} "
            f"{(str(sum(st)) + '/' + str(len(st))) if st else '-':>8} "
            f"{np.mean([r.rel_rmse for r in rs]):>15.3e} {max(r.rel_rmse for r in rs):>14.3e} "
            f"{max(r.max_abs for r in rs):>10.3e}"
        )
    n_exact = sum(r.exact for r in reps)
    lines.append(f"bit-exact: {n_exact}/{len(reps)} tensors")
    return "\n".join(lines)
