"""Generate csrc/quant/iq2xs_grid.inc (512 points) and iq2s_grid.inc (1024 points) from the `gguf`
package's IQ2_XS / IQ2_S grids (one-off; re-run with --check to verify the committed tables).  Each entry
packs the 8 grid coordinates as 2-bit indices (bits 2i..2i+1 = coordinate i) into (0x08, 0x19, 0x2b), the
same packing as ggml's kgrid_2bit_512 / kgrid_2bit_1024."""

from __future__ import annotations

from gen_grids_common import grid_words, main, render_table
from gguf.quants import IQ2_S, IQ2_XS


def render(cls: type, size: int) -> str:
    name = cls.__name__
    legend = f"{size} {name} grid points, coordinate i = (0x08, 0x19, 0x2b)[(v >> 2i) & 3]."
    return render_table("gen_iq2s_grids.py", name, legend, grid_words(cls, size), 5)


if __name__ == "__main__":
    main({"iq2xs_grid.inc": lambda: render(IQ2_XS, 512), "iq2s_grid.inc": lambda: render(IQ2_S, 1024)})
