"""Generate csrc/quant/iq2xxs_grid.inc from the `gguf` package's IQ2_XXS grid (one-off; re-run with
--check to verify the committed table).  Each entry packs the 8 grid coordinates as 2-bit indices
(bits 2i..2i+1 = coordinate i) into (0x08, 0x19, 0x2b), the same packing as ggml's kgrid_2bit_256."""

from __future__ import annotations

from gen_grids_common import grid_words, main, render_table
from gguf.quants import IQ2_XXS


def render() -> str:
    legend = "256 IQ2_XXS grid points, coordinate i = (0x08, 0x19, 0x2b)[(v >> 2i) & 3]."
    return render_table("gen_iq2xxs_grid.py", "IQ2_XXS", legend, grid_words(IQ2_XXS, 256), 5)


if __name__ == "__main__":
    main({"iq2xxs_grid.inc": render})
