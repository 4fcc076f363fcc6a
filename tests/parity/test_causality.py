"""Causality (issue 3, must-show 2): a future token never changes earlier logits; compressed entry j of
a ratio-m layer becomes visible exactly at query position j*m + m - 1 (when its block is complete; official
``get_compress_topk_idxs``: j < (p+1)//m), in prefill and in
decode."""

from __future__ import annotations

import copy

import pytest
import torch

from dsv4_gguf.reference import Taps


def test_future_token_does_not_change_past(small_model, tokens):
    ids = tokens[:1, :260].clone()
    a = small_model(ids, all_logits=True)
    ids[0, 200] = (ids[0, 200] + 1) % small_model.args.vocab_size
    b = small_model(ids, all_logits=True)
    assert torch.equal(a[:, :200], b[:, :200])  # same shapes, same rows: bitwise equal
    assert not torch.equal(a[:, 200], b[:, 200])


@pytest.mark.parametrize(("layer", "m"), [(1, 128), (2, 4)])
def test_compressed_entry_visible_exactly_at_block_end(small_model, tokens, layer, m):
    """Perturb only the compressed entries of one layer (its compressor's norm weight): that layer's
    attention output must be bitwise unchanged before position m-1 and change at m-1."""
    args = small_model.args
    assert args.compress_ratios[layer] == m
    other = copy.deepcopy(small_model)
    with torch.no_grad():
        other.layers[layer].attn.compressor.norm.weight.mul_(1.5)
    name = f"layers.{layer}.attn_out"
    ids = tokens[:1, : m + 4]

    def prefill(model):
        taps = Taps([name])
        model(ids, taps=taps)
        return taps[name]

    a, b = prefill(small_model), prefill(other)
    assert torch.equal(a[:, : m - 1], b[:, : m - 1])
    assert not torch.equal(a[:, m - 1], b[:, m - 1])

    def decode_at(model, p):  # prefill p tokens, then decode position p alone
        st = model.new_state(1)
        model(ids[:, :p], st)
        taps = Taps([name])
        model(ids[:, p : p + 1], st, taps=taps)
        return taps[name]

    assert torch.equal(decode_at(small_model, m - 2), decode_at(other, m - 2))
    assert not torch.equal(decode_at(small_model, m - 1), decode_at(other, m - 1))


def test_compressed_visibility_masks(small_model, tokens):
    """Over 400 positions: HCA layers see exactly entries j < (p+1)//128; CSA layers a top-k subset of
    j < (p+1)//4 of size min(index_topk, (p+1)//4), equal to the indexer's choice."""
    args = small_model.args
    taps = Taps(["layers.*.comp_mask", "layers.*.idx_topk"])
    small_model(tokens[:, :400], taps=taps)
    p = torch.arange(400)
    for i, m in enumerate(args.compress_ratios[: args.n_layers]):
        if m == 0:
            assert f"layers.{i}.comp_mask" not in taps
            continue
        mask = taps[f"layers.{i}.comp_mask"]  # [b, s, n]
        j = torch.arange(mask.size(-1))
        allowed = j[None, :] < ((p + 1) // m)[:, None]
        if m == 128:
            assert torch.equal(mask, allowed.expand_as(mask))
        else:
            assert not (mask & ~allowed).any()
            want = torch.clamp((p + 1) // m, max=args.index_topk)
            assert torch.equal(mask.sum(-1), want.expand(mask.size(0), -1))
            top = taps[f"layers.{i}.idx_topk"]
            from_idx = torch.zeros_like(mask)
            b_, s_, k_ = torch.where(top >= 0)
            from_idx[b_, s_, top[b_, s_, k_]] = True
            assert torch.equal(from_idx, mask)
