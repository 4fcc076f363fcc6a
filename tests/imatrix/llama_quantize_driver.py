"""Subprocess driver (llama.cpp's log callback chokes on token text in-process): load an imatrix file with
llama.cpp's own loader (the shim), normalise it as tools/quantize does (GGUF: sums / count, count 0 -> 1;
legacy: values / ncall), pass it to ``llama_model_quantize`` and save what llama.cpp loaded to an .npz.

usage: python llama_quantize_driver.py SHIM.so IMATRIX SRC.gguf DST.gguf FTYPE OUT.npz
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np


def main(shim_path: str, imatrix: str, src: str, dst: str, ftype: int, out: str) -> int:
    import llama_cpp

    shim = ctypes.CDLL(shim_path)
    shim.shim_entry.restype = ctypes.c_char_p
    info = (ctypes.c_int * 4)()
    n = shim.shim_load(imatrix.encode(), info) if imatrix != "-" else 0  # "-": quantize without an imatrix
    if n < 0:
        print("llama.cpp's common_imatrix_load failed", file=sys.stderr)
        return 3
    legacy, has_meta = info[0], info[1]
    if imatrix != "-" and not legacy and not has_meta:
        print("missing imatrix metadata (tools/quantize refuses the file)", file=sys.stderr)
        return 4
    saved, keep, entries = {}, [], (llama_cpp.llama_model_imatrix_data * (n + 1))()
    for i in range(n):
        ns, nc = ctypes.c_long(), ctypes.c_long()
        name = shim.shim_entry(i, ctypes.byref(ns), ctypes.byref(nc))
        sums = np.empty(ns.value, np.float32)
        counts = np.empty(nc.value, np.int64)
        shim.shim_copy(i, sums.ctypes.data_as(ctypes.c_void_p), counts.ctypes.data_as(ctypes.c_void_p))
        if legacy:
            vals = sums / counts[0] if counts[0] > 0 else sums.copy()
        else:
            s = sums.reshape(len(counts), -1)
            vals = np.where(counts[:, None] > 0, s / np.maximum(counts[:, None], 1).astype(np.float32), 1.0)
            vals = vals.astype(np.float32).reshape(-1)
        vals = np.ascontiguousarray(vals, np.float32)
        keep.append(vals)
        saved[f"sums:{name.decode()}"], saved[f"counts:{name.decode()}"] = sums, counts
        saved[f"mean:{name.decode()}"] = vals
        entries[i].name = name
        entries[i].data = vals.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entries[i].size = vals.size
    entries[n].name = None
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = 2
    p.allow_requantize = True
    if imatrix != "-":
        p.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    # the compressors' `ape` is added, not multiplied: no activations exist for it (llama-imatrix has none
    # either), yet an IQ2 file type would quantize it and then demand an imatrix; keep it F32
    ov = (llama_cpp.llama_model_tensor_override * 2)()
    ov[0].pattern, ov[0].type, ov[1].pattern = rb"_ape\.weight", 0, None
    p.tt_overrides = ctypes.cast(ov, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p)
    np.savez(out, chunk_count=info[2], chunk_size=info[3], legacy=legacy, **saved)
    return int(rc)


if __name__ == "__main__":
    a = sys.argv[1:]
    raise SystemExit(main(a[0], a[1], a[2], a[3], int(a[4]), a[5]))
