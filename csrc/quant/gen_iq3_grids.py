"""Generate csrc/quant/iq3xxs_grid.inc and iq3s_grid.inc from the `gguf` package's IQ3_XXS / IQ3_S grids
(one-off; re-run with --check to verify the committed tables).  Each entry packs the 4 grid coordinates
as 3-bit level indices l (bits 3i..3i+2 = coordinate i), the packing of ggml's kgrid_256 / kgrid_512 in
iq3xs_init_impl; the quantizer's point is 2*l+1, the dequantized value grid_map[l]."""

from __future__ import annotations

import numpy as np
from gen_grids_common import main, render_table
from gguf.quants import IQ3_S, IQ3_XXS


def render(cls: type) -> str:
    cls.init_grid()
    grid = np.asarray(cls.grid).reshape(cls.grid_shape)
    levels = list(cls.grid_map)
    packed = [sum(levels.index(float(v)) << (3 * i) for i, v in enumerate(row)) for row in grid]
    name = cls.__name__
    values = ", ".join(f"0x{v:02x}" for v in levels)
    legend = f"{len(packed)} {name} grid points, coordinate i = ({values})[(v >> 3i) & 7]."
    return render_table("gen_iq3_grids.py", name, legend, packed, 4)


if __name__ == "__main__":
    main({"iq3xxs_grid.inc": lambda: render(IQ3_XXS), "iq3s_grid.inc": lambda: render(IQ3_S)})
