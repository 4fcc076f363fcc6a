"""The converter's --imatrix works per expert slice: an expert the imatrix never saw routed (count 0) is
quantized with the weight-energy fallback, byte-identical to a conversion without imatrix, and is
reported; a routed expert's bytes change with the imatrix."""

from __future__ import annotations

import numpy as np

from dsv4_gguf.cli import main


def test_unseen_expert_gets_energy_fallback(tiny_ckpt, tmp_path, capsys):
    from dsv4_gguf.quantize.imatrix import RawImatrix, load_imatrix, write_imatrix

    from dsv4_gguf.gguf_io import GGUFFile

    name = "blk.3.ffn_gate_exps.weight"  # IQ2_XXS in the IQ2_XXS-MOE recipe
    rng = np.random.default_rng(0)
    sums = rng.random((8, 256)) * 50 + rng.random(256) ** 8 * 5000  # a few strong columns
    counts = np.full(8, 10.0)
    counts[3] = 0  # never routed
    im = tmp_path / "im.gguf"
    write_imatrix(im, RawImatrix({name: sums}, {name: counts}, ["synthetic"], 1, 128))
    loaded = load_imatrix(im)
    assert loaded.unseen == {name: [3]}
    np.testing.assert_allclose(loaded[name][0], sums[0] / 10, rtol=1e-6)
    assert (loaded[name][3] == 1.0).all()  # llama.cpp's value for an unseen expert

    plain, withim = tmp_path / "plain.gguf", tmp_path / "im.gguf.out"
    assert main(["convert", str(tiny_ckpt), "-o", str(plain), "--type", "IQ2_XXS-MOE", "--no-mtp"]) == 0
    capsys.readouterr()
    assert (
        main(["convert", str(tiny_ckpt), "-o", str(withim), "--type", "IQ2_XXS-MOE", "--no-mtp", "--imatrix", str(im)])
        == 0
    )
    out = capsys.readouterr().out
    assert "1 expert slices were never routed" in out and f"{name} [3]" in out
    a, b = GGUFFile(plain).raw(name), GGUFFile(withim).raw(name)
    assert a.shape[0] == 8
    np.testing.assert_array_equal(a[3], b[3])  # unseen: weight energy, as without an imatrix
    for e in (0, 1, 2, 4, 5, 6, 7):
        assert not np.array_equal(a[e], b[e]), f"expert {e}: the imatrix did not reach the quantizer"
