"""MTP draft block (the official ``MTPBlock``) of the C++ runtime vs the reference's ``forward_mtp`` on the converter's
tiny MXFP4_MOE GGUF + its MTP sidecar (``mtp-*.gguf``), exact mode: 200-token prefill then 20 decode
steps, draft logits compared with the near-tie rule of tests/support/parity.py; save/restore keeps the
MTP state (window, position, pending main streams)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support import parity, report  # noqa: E402

from dsv4_gguf.reference import Taps, Transformer, load_weights  # noqa: E402

_report, LINES = report.reporter_fixture("runtime MTP vs reference (measured)")


@pytest.fixture(scope="module")
def gguf(tiny_ckpt, tmp_path_factory):
    from dsv4_gguf.cli import main

    out = tmp_path_factory.mktemp("rtmtp") / "tiny.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", "MXFP4_MOE"]) == 0
    assert out.with_name("mtp-tiny.gguf").is_file()
    return out


def test_mtp_matches_reference(gguf, tiny_args, tmp_path):
    from dsv4_gguf import open_gguf, runtime

    ref = Transformer(tiny_args)
    g = open_gguf(gguf)
    load_weights(ref, g.checkpoint_weights())
    g.close()
    toks = np.random.default_rng(3).integers(0, tiny_args.vocab_size, 221).astype(np.int32)
    n = 200
    st = ref.new_state()
    taps = Taps(["layers.*.router_idx", "layers.*.idx_topk", "mtp.0.router_idx"])
    _, hid = ref(torch.from_numpy(toks[None, :n].astype(np.int64)), st, all_logits=True, return_hidden=True, taps=taps)
    ref_mtp = [
        ref.forward_mtp(
            hid[:, : n - 1], torch.from_numpy(toks[None, 1:n].astype(np.int64)), st, all_logits=True, taps=taps
        )[0].numpy()
    ]
    model = runtime.load(gguf, threads=2, exact=True)
    assert model.config["has_mtp"]
    s = model.session(ctx=512, mtp=True)
    s.set_taps(parity.SELECTION_TAPS + parity.MARGIN_TAPS + ["mtp.0.router_idx", "mtp.0.router_margin"])
    s.prefill(toks[:n])
    got_mtp = [s.mtp(toks[1:n], all_logits=True)]
    prev = hid[:, n - 1 : n]
    for i in range(n, n + 20):  # decode: stream i-1 meets token i, then the main model consumes token i
        ref_mtp.append(
            ref.forward_mtp(prev, torch.from_numpy(toks[None, i : i + 1].astype(np.int64)), st, taps=taps).numpy()
        )
        got_mtp.append(s.mtp([int(toks[i])])[None])
        _, prev = ref(torch.from_numpy(toks[None, i : i + 1].astype(np.int64)), st, return_hidden=True, taps=taps)
        s.decode(int(toks[i]))
    r, gm = np.concatenate(ref_mtp), np.concatenate(got_mtp)
    got_taps = s.take_taps()
    ref_taps = {k: taps[k].numpy() for k in taps.keys()}
    # main-layer taps cover n + 20 positions, MTP taps n - 1 + 20: compare the MTP rows only for choices
    c = parity.compare(r, gm, ref_taps, {k: v for k, v in got_taps.items() if k.startswith("mtp.0.")})
    LINES.append(c.line(f"MTP draft ({len(r)} positions, exact)"))
    parity.check(c, "MTP exact", min_top1=0.97, max_mean_kld=1e-3)

    # save/restore keeps the MTP window, position and pending streams
    s.save(tmp_path / "st")
    a = s.mtp([int(toks[n + 20])])
    r2 = model.session(ctx=512, mtp=True)
    r2.load_state(tmp_path / "st")
    assert np.array_equal(a, r2.mtp([int(toks[n + 20])]))
    with pytest.raises(RuntimeError, match="MTP"):
        model.session(ctx=512).load_state(tmp_path / "st")
    with pytest.raises(ValueError, match="waiting"):
        r2.mtp([1, 2])
