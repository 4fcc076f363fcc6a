"""Generate csrc/quant/iq1s_grid.inc from the `gguf` package's IQ1_S grid (one-off; re-run with --check
to verify the committed table).  Each entry packs the 8 grid coordinates as 2-bit levels (bits 2i..2i+1 =
level of coordinate i, levels 0, 1, 2 = values -1, 0, +1), the same packing as ggml's kgrid_1bit_2048;
IQ1_S and IQ1_M share this grid."""

from __future__ import annotations

from gen_grids_common import grid_words, main, render_table
from gguf.quants import IQ1_S


def render() -> str:
    legend = "2048 IQ1_S/IQ1_M grid points, coordinate i = (-1, 0, +1)[(v >> 2i) & 3]."
    return render_table("gen_iq1s_grid.py", "IQ1_S", legend, grid_words(IQ1_S, 2048), 5)


if __name__ == "__main__":
    main({"iq1s_grid.inc": render})
