"""ModelArgs: presets, both config.json forms, and validation errors that name the key."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dsv4_gguf.config import PRESETS, ConfigError, ModelArgs, load_config


def test_flash_and_pro_presets_have_spec_values():
    f, p = PRESETS["flash"], PRESETS["pro"]
    assert (f.dim, f.n_layers, f.n_heads, f.q_lora_rank, f.o_groups, f.n_routed_experts, f.index_topk) == (
        4096,
        43,
        64,
        1024,
        8,
        256,
        512,
    )
    assert (p.dim, p.n_layers, p.n_heads, p.q_lora_rank, p.o_groups, p.n_routed_experts, p.index_topk) == (
        7168,
        61,
        128,
        1536,
        16,
        384,
        1024,
    )
    assert f.compress_ratios[:4] == (0, 0, 4, 128) and f.compress_ratios[-2:] == (4, 0)
    assert len(f.compress_ratios) == 44 and len(p.compress_ratios) == 62
    assert p.compress_ratios[:4] == (128, 128, 4, 128) and p.compress_ratios[-2:] == (4, 0)
    assert (f.route_scale, p.route_scale) == (1.5, 2.5)
    for a in (f, p):
        assert (a.rope_factor, a.original_seq_len, a.beta_fast, a.beta_slow) == (16.0, 65536, 32, 1)
        assert (a.compress_rope_theta, a.rope_theta, a.window_size, a.hc_sinkhorn_iters) == (160000.0, 10000.0, 128, 20)


def test_tiny_preset_has_every_structural_feature():
    t = PRESETS["tiny"]
    assert set(t.compress_ratios[: t.n_layers]) == {0, 4, 128}
    assert 0 < t.n_hash_layers < t.n_layers and t.n_mtp_layers == 1
    assert t.vocab_size == 129280
    s = PRESETS["flash-slice"]
    assert (s.dim, s.n_routed_experts, s.moe_inter_dim) == (4096, 256, 2048)
    assert set(s.compress_ratios[: s.n_layers]) == {0, 4, 128}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_hf_and_inference_forms_round_trip(tmp_path, name):
    a = PRESETS[name]
    hf, inf = tmp_path / "config.json", tmp_path / "inference.json"
    hf.write_text(json.dumps(a.to_hf_dict()))
    inf.write_text(json.dumps(a.to_inference_dict()))
    assert ModelArgs.from_file(hf) == a
    assert ModelArgs.from_file(inf) == a


def test_load_config_from_directory_prefers_root_then_inference(tmp_path):
    a = PRESETS["tiny"]
    (tmp_path / "inference").mkdir()
    (tmp_path / "inference" / "config.json").write_text(json.dumps(a.to_inference_dict()))
    assert load_config(tmp_path) == a
    (tmp_path / "config.json").write_text(json.dumps(a.to_hf_dict()))
    assert load_config(tmp_path) == a
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        load_config(empty)


def _bad(**changes):
    d = PRESETS["tiny"].to_inference_dict()
    d.update(changes)
    return d


@pytest.mark.parametrize(
    "changes,key",
    [
        ({"compress_ratios": [0, 64, 4, 128, 4, 0]}, "compress_ratios[1]"),
        ({"compress_ratios": [0, 128, 4, 128, 4]}, "compress_ratios"),
        ({"compress_ratios": [0, 128, 4, 128, 4, 4]}, "compress_ratios[5]"),
        ({"hc_mult": 3}, "hc_mult"),
        ({"dim": 200}, "dim"),
        ({"q_lora_rank": 100}, "q_lora_rank"),
        ({"moe_inter_dim": 96}, "moe_inter_dim"),
        ({"index_head_dim": 96}, "index_head_dim"),
        ({"n_hash_layers": 5}, "n_hash_layers"),
        ({"n_heads": 5}, "n_heads"),
        ({"head_dim": 96}, "head_dim"),
        ({"n_activated_experts": 9}, "n_activated_experts"),
        ({"n_shared_experts": 2}, "n_shared_experts"),
        ({"score_func": "softmax"}, "score_func"),
        ({"dim": "256"}, "dim"),
        ({"route_scale": "x"}, "route_scale"),
        ({"compress_ratios": "0,4"}, "compress_ratios"),
        ({"expert_dtype": "int4"}, "expert_dtype"),
    ],
)
def test_invalid_config_names_the_key(tmp_path, changes, key):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(_bad(**changes)))
    with pytest.raises(ConfigError) as e:
        ModelArgs.from_file(p)
    assert f"'{key}'" in str(e.value) or key in str(e.value)
    assert str(p) in str(e.value)


def test_missing_required_key_and_bad_json(tmp_path):
    d = PRESETS["tiny"].to_hf_dict()
    del d["hidden_size"]
    p = tmp_path / "config.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="'hidden_size' is missing"):
        ModelArgs.from_file(p)
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelArgs.from_file(p)
    with pytest.raises(ConfigError, match="file not found"):
        ModelArgs.from_file(tmp_path / "nope.json")


def test_replace_validates():
    with pytest.raises(ConfigError, match="hc_mult"):
        PRESETS["tiny"].replace(hc_mult=2)
    assert dataclasses.replace(PRESETS["tiny"], vocab_size=1024).validate().vocab_size == 1024
