"""DeepSeek-V4 model configuration: ``ModelArgs`` and the named presets.

Field names are the keys of ``inference/config.json`` in DeepSeek's release (the ``ModelArgs`` of its
``inference/model.py``, Hugging Face ``deepseek-ai/DeepSeek-V4-Flash`` / ``-Pro``); the release's root
``config.json`` (Hugging Face names: ``hidden_size``, ``num_hidden_layers``, ...) is mapped onto them.
Validation enforces the structural constraints that the official code, llama.cpp's ``deepseek4`` and our
runtime rely on: compress ratios 0/4/128, ``hc_mult`` 4, FP8/FP4 linear inputs in 128-element blocks, a
power-of-two indexer head.  This module does no I/O beyond reading one JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "ModelArgs", "PRESETS", "preset", "load_config"]

VALID_RATIOS = (0, 4, 128)


class ConfigError(ValueError):
    """A configuration key is missing, has the wrong type, or breaks a structural constraint."""


@dataclass(frozen=True)
class ModelArgs:
    """Model hyper-parameters, named exactly as the official ``inference/config.json`` keys."""

    vocab_size: int = 129280
    dim: int = 4096
    moe_inter_dim: int = 2048
    n_layers: int = 43
    n_hash_layers: int = 3
    n_mtp_layers: int = 1
    n_heads: int = 64
    n_routed_experts: int = 256
    n_shared_experts: int = 1
    n_activated_experts: int = 6
    score_func: str = "sqrtsoftplus"
    route_scale: float = 1.5
    swiglu_limit: float = 10.0
    q_lora_rank: int = 1024
    head_dim: int = 512
    rope_head_dim: int = 64
    o_groups: int = 8
    o_lora_rank: int = 1024
    window_size: int = 128
    original_seq_len: int = 65536
    rope_theta: float = 10000.0
    rope_factor: float = 16.0
    beta_fast: int = 32
    beta_slow: int = 1
    index_n_heads: int = 64
    index_head_dim: int = 128
    index_topk: int = 512
    hc_mult: int = 4
    hc_sinkhorn_iters: int = 20
    hc_eps: float = 1e-6
    norm_eps: float = 1e-6
    dtype: str = "fp8"
    scale_fmt: str = "ue8m0"
    scale_dtype: str = "fp8"
    expert_dtype: str = "fp4"
    compress_rope_theta: float = 160000.0
    compress_ratios: tuple[int, ...] = field(default_factory=lambda: (0, 0) + (4, 128) * 20 + (4, 0))
    max_seq_len: int = 4096  # runtime-only, official default
    max_batch_size: int = 4  # runtime-only, official default

    # ---- derived quantities (never stored in config files) ----
    @property
    def n_blocks(self) -> int:
        """Main blocks plus MTP blocks (the length of ``compress_ratios``)."""
        return self.n_layers + self.n_mtp_layers

    @property
    def nope_head_dim(self) -> int:
        return self.head_dim - self.rope_head_dim

    def ratio(self, block: int) -> int:
        """Compression ratio of block ``block`` (``n_layers + k`` is MTP block k)."""
        return self.compress_ratios[block]

    def is_hash_layer(self, block: int) -> bool:
        return block < self.n_hash_layers

    def validate(self) -> ModelArgs:
        """Raise :class:`ConfigError` naming the offending key; return ``self`` when valid."""
        ints = [f.name for f in dataclasses.fields(self) if f.type in ("int", int)]
        for name in ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"config key '{name}' must be a non-negative integer, got {v!r}")
        positive = [
            "vocab_size",
            "dim",
            "moe_inter_dim",
            "n_layers",
            "n_heads",
            "n_routed_experts",
            "n_activated_experts",
            "q_lora_rank",
            "head_dim",
            "rope_head_dim",
            "o_groups",
            "o_lora_rank",
            "window_size",
            "index_n_heads",
            "index_head_dim",
            "index_topk",
            "hc_sinkhorn_iters",
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"config key '{name}' must be > 0, got {getattr(self, name)}")
        if self.hc_mult != 4:
            raise ConfigError(f"config key 'hc_mult' must be 4 (mHC with 4 streams), got {self.hc_mult}")
        if self.n_shared_experts != 1:
            raise ConfigError(f"config key 'n_shared_experts' must be 1, got {self.n_shared_experts}")
        if self.score_func != "sqrtsoftplus":
            raise ConfigError(f"config key 'score_func' must be 'sqrtsoftplus', got {self.score_func!r}")
        if self.expert_dtype not in ("fp4", "fp8"):
            raise ConfigError(f"config key 'expert_dtype' must be 'fp4' or 'fp8', got {self.expert_dtype!r}")
        if self.dtype != "fp8" or self.scale_fmt != "ue8m0":
            raise ConfigError(
                f"config keys 'dtype'/'scale_fmt' must be 'fp8'/'ue8m0' (FP8 weights with E8M0 block "
                f"scales), got {self.dtype!r}/{self.scale_fmt!r}"
            )
        if len(self.compress_ratios) != self.n_blocks:
            raise ConfigError(
                f"config key 'compress_ratios' must have n_layers + n_mtp_layers = {self.n_blocks} "
                f"entries (the last ones for the MTP blocks), got {len(self.compress_ratios)}"
            )
        for i, r in enumerate(self.compress_ratios):
            if r not in VALID_RATIOS:
                raise ConfigError(f"config key 'compress_ratios[{i}]' must be one of {VALID_RATIOS}, got {r}")
        for i in range(self.n_layers, self.n_blocks):
            if self.compress_ratios[i] != 0:
                raise ConfigError(
                    f"config key 'compress_ratios[{i}]' belongs to an MTP block and must be 0, "
                    f"got {self.compress_ratios[i]}"
                )
        if self.n_hash_layers >= self.n_layers:
            raise ConfigError(f"config key 'n_hash_layers' ({self.n_hash_layers}) must be < n_layers ({self.n_layers})")
        if self.n_activated_experts > self.n_routed_experts:
            raise ConfigError(
                f"config key 'n_activated_experts' ({self.n_activated_experts}) exceeds "
                f"n_routed_experts ({self.n_routed_experts})"
            )
        if self.rope_head_dim % 2 or self.rope_head_dim >= self.head_dim:
            raise ConfigError(
                f"config key 'rope_head_dim' ({self.rope_head_dim}) must be even and < head_dim ({self.head_dim})"
            )
        if self.nope_head_dim % 64:
            raise ConfigError(
                f"config keys 'head_dim' - 'rope_head_dim' = {self.nope_head_dim} must be a multiple of "
                f"64 (the KV FP8 simulation block)"
            )
        if self.n_heads % self.o_groups:
            raise ConfigError(
                f"config key 'n_heads' ({self.n_heads}) must be divisible by 'o_groups' ({self.o_groups})"
            )
        # Inputs of FP8/FP4 linears are quantised in 128-element blocks: the official inference/kernel.py
        # act_quant asserts it (block size 128, power-of-two scales).
        for what, v in [
            ("dim", self.dim),
            ("q_lora_rank", self.q_lora_rank),
            ("moe_inter_dim", self.moe_inter_dim),
            ("o_groups * o_lora_rank", self.o_groups * self.o_lora_rank),
            ("n_heads * head_dim / o_groups", self.n_heads * self.head_dim // self.o_groups),
        ]:
            if v % 128:
                raise ConfigError(f"config value {what} = {v} must be a multiple of 128 (FP8 block size)")
        d = self.index_head_dim
        if d < 64 or d & (d - 1):
            raise ConfigError(f"config key 'index_head_dim' must be a power of two >= 64 (Hadamard), got {d}")
        if self.rope_head_dim > self.index_head_dim:
            raise ConfigError("config key 'rope_head_dim' must not exceed 'index_head_dim'")
        return self

    # ---- serialisation ----
    def to_inference_dict(self) -> dict[str, Any]:
        """The official ``inference/config.json`` form."""
        d = dataclasses.asdict(self)
        d["compress_ratios"] = list(self.compress_ratios)
        for k in ("max_seq_len", "max_batch_size", "scale_dtype"):
            d.pop(k)
        return d

    def to_hf_dict(self) -> dict[str, Any]:
        """The release's root ``config.json`` form (Hugging Face keys, ``DeepseekV4ForCausalLM``)."""
        d: dict[str, Any] = {
            "architectures": ["DeepseekV4ForCausalLM"],
            "model_type": "deepseek_v4",
            "attention_bias": False,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "hidden_act": "silu",
            "tie_word_embeddings": False,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.57.1",
            "max_position_embeddings": 1048576,
            "num_key_value_heads": 1,
            "norm_topk_prob": True,
            "topk_method": "noaux_tc",
            "rope_scaling": {
                "type": "yarn",
                "factor": self.rope_factor,
                "original_max_position_embeddings": self.original_seq_len,
                "beta_fast": self.beta_fast,
                "beta_slow": self.beta_slow,
            },
            "quantization_config": {
                "quant_method": "fp8",
                "fmt": "e4m3",
                "scale_fmt": self.scale_fmt,
                "weight_block_size": [128, 128],
                "activation_scheme": "dynamic",
            },
        }
        for hf_key, key in _HF_TO_INFERENCE.items():
            d[hf_key] = getattr(self, key)
        d["compress_ratios"] = list(self.compress_ratios)
        return dict(sorted(d.items()))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "config") -> ModelArgs:
        """Build from either config form (detected by its keys) and validate."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        is_hf = "hidden_size" in raw or "num_hidden_layers" in raw
        kw: dict[str, Any] = {}
        names = {f.name: f for f in dataclasses.fields(cls)}
        if is_hf:
            for hf_key, key in _HF_TO_INFERENCE.items():
                if hf_key in raw:
                    kw[key] = raw[hf_key]
            rs = raw.get("rope_scaling") or {}
            if not isinstance(rs, dict):
                raise ConfigError(f"{source}: key 'rope_scaling' must be an object")
            for hf_key, key in [
                ("factor", "rope_factor"),
                ("original_max_position_embeddings", "original_seq_len"),
                ("beta_fast", "beta_fast"),
                ("beta_slow", "beta_slow"),
            ]:
                if hf_key in rs:
                    kw[key] = rs[hf_key]
            qc = raw.get("quantization_config") or {}
            if isinstance(qc, dict) and "scale_fmt" in qc:
                kw["scale_fmt"] = qc["scale_fmt"]
            required = ["hidden_size", "num_hidden_layers", "num_attention_heads", "compress_ratios"]
        else:
            for key, v in raw.items():
                if key in names:
                    kw[key] = v
            required = ["dim", "n_layers", "n_heads", "compress_ratios"]
        for k in required:
            if k not in raw:
                raise ConfigError(f"{source}: required key '{k}' is missing")
        for key, v in list(kw.items()):
            f = names[key]
            kw[key] = _coerce(key, v, f.type, source)
        try:
            args = cls(**kw)
        except TypeError as e:  # pragma: no cover - dataclass signature mismatch
            raise ConfigError(f"{source}: {e}") from None
        try:
            return args.validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> ModelArgs:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(raw, source=str(path))

    def replace(self, **changes: Any) -> ModelArgs:
        return dataclasses.replace(self, **changes).validate()


# Release root config.json key (Hugging Face names) -> inference/config.json key (official ModelArgs names).
_HF_TO_INFERENCE: dict[str, str] = {
    "vocab_size": "vocab_size",
    "hidden_size": "dim",
    "moe_intermediate_size": "moe_inter_dim",
    "num_hidden_layers": "n_layers",
    "num_hash_layers": "n_hash_layers",
    "num_nextn_predict_layers": "n_mtp_layers",
    "num_attention_heads": "n_heads",
    "n_routed_experts": "n_routed_experts",
    "n_shared_experts": "n_shared_experts",
    "num_experts_per_tok": "n_activated_experts",
    "scoring_func": "score_func",
    "routed_scaling_factor": "route_scale",
    "swiglu_limit": "swiglu_limit",
    "q_lora_rank": "q_lora_rank",
    "head_dim": "head_dim",
    "qk_rope_head_dim": "rope_head_dim",
    "o_groups": "o_groups",
    "o_lora_rank": "o_lora_rank",
    "sliding_window": "window_size",
    "rope_theta": "rope_theta",
    "index_n_heads": "index_n_heads",
    "index_head_dim": "index_head_dim",
    "index_topk": "index_topk",
    "hc_mult": "hc_mult",
    "hc_sinkhorn_iters": "hc_sinkhorn_iters",
    "hc_eps": "hc_eps",
    "rms_norm_eps": "norm_eps",
    "expert_dtype": "expert_dtype",
    "compress_rope_theta": "compress_rope_theta",
    "compress_ratios": "compress_ratios",
}


def _coerce(key: str, v: Any, typ: Any, source: str) -> Any:
    t = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    if t == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{source}: key '{key}' must be an integer, got {v!r}")
        return v
    if t == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{source}: key '{key}' must be a finite number, got {v!r}")
        return float(v)
    if t == "str":
        if not isinstance(v, str):
            raise ConfigError(f"{source}: key '{key}' must be a string, got {v!r}")
        return v
    if t.startswith("tuple"):
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise ConfigError(f"{source}: key '{key}' must be a list of integers, got {v!r}")
        return tuple(v)
    return v  # pragma: no cover


def load_config(path: str | Path) -> ModelArgs:
    """Load a checkpoint's configuration.

    ``path`` may be a checkpoint directory (its root ``config.json`` is read, falling back to
    ``inference/config.json``) or a JSON file of either form.
    """
    path = Path(path)
    if path.is_dir():
        for cand in (path / "config.json", path / "inference" / "config.json"):
            if cand.is_file():
                return ModelArgs.from_file(cand)
        raise ConfigError(f"{path}: no config.json or inference/config.json found")
    return ModelArgs.from_file(path)


_FLASH = ModelArgs()

_PRO = ModelArgs(
    dim=7168,
    moe_inter_dim=3072,
    n_layers=61,
    n_heads=128,
    n_routed_experts=384,
    route_scale=2.5,
    q_lora_rank=1536,
    o_groups=16,
    index_topk=1024,
    compress_ratios=(128, 128) + (4, 128) * 29 + (4, 0),
)

# Every structural feature of the release (SWA, HCA, CSA, hash layers, MTP, the real 129,280-token
# vocabulary) at small width, within the constraints validate() checks.
_TINY = ModelArgs(
    dim=256,
    moe_inter_dim=256,
    n_layers=5,
    n_hash_layers=2,
    n_heads=4,
    n_routed_experts=8,
    n_activated_experts=2,
    head_dim=128,
    q_lora_rank=128,
    o_groups=2,
    o_lora_rank=128,
    index_n_heads=4,
    index_head_dim=128,
    index_topk=8,
    compress_ratios=(0, 128, 4, 128, 4, 0),
)

# Full Flash widths and 256 experts, few layers: hash+SWA, CSA, HCA, then the MTP block.
_FLASH_SLICE = dataclasses.replace(_FLASH, n_layers=3, n_hash_layers=1, compress_ratios=(0, 4, 128, 0))

PRESETS: dict[str, ModelArgs] = {
    "flash": _FLASH.validate(),
    "pro": _PRO.validate(),
    "tiny": _TINY.validate(),
    "flash-slice": _FLASH_SLICE.validate(),
}


def preset(name: str) -> ModelArgs:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
