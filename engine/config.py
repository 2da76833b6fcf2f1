"""Model configuration: one frozen dataclass, read from config.json or GGUF metadata.

Values computed at run time (KV block counts after budgeting, chosen threads) do not
live here; see `engine.kv_cache.CacheConfig`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ModelLoadError, UnsupportedModelError

# model_type -> whether q/k/v projections carry a bias.
_QKV_BIAS_DEFAULT = {"llama": False, "iquestcoder": False, "iquestloopcoder": False, "qwen2": True, "qwen3": False,
                     "mistral": False, "starcoder2": True}
SUPPORTED_MODEL_TYPES = tuple(_QKV_BIAS_DEFAULT)
_LLAMA_TYPES = frozenset({"llama", "iquestcoder", "iquestloopcoder"})
_O_BIAS_TYPES = _LLAMA_TYPES | {"qwen3"}  # attention_bias covers o_proj too
_MLP_BIAS_TYPES = _LLAMA_TYPES
# The activation each MLP computes: SwiGLU's gate, StarCoder2's GELU (tanh approximation, as
# transformers' gelu_pytorch_tanh).
MLP_ACTIVATIONS = {"swiglu": ("silu", "swish"), "gelu": ("gelu_pytorch_tanh",)}


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.x frequency scaling ("llama3") or plain position interpolation ("linear")."""

    rope_type: str
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6  # config.json's rms_norm_eps, or StarCoder2's norm_epsilon (LayerNorm)
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    norm: str = "rms"  # "rms": RMSNorm; "layer": LayerNorm with a bias (StarCoder2)
    mlp: str = "swiglu"  # "swiglu": down(silu(gate) * up); "gelu": down(gelu(up)) (StarCoder2)
    qkv_bias: bool = False
    o_bias: bool = False  # StarCoder2's use_bias, Llama's and Qwen3's attention_bias: o_proj has a bias
    mlp_bias: bool = False  # StarCoder2's use_bias, Llama's mlp_bias: every MLP projection has one
    qk_norm: bool = False  # Qwen3: RMSNorm over each head of q and k, before RoPE
    sliding_window: int | None = None  # Mistral v0.1: each token sees its last W keys (itself included)
    hidden_act: str = "silu"
    rope_scaling: RopeScaling | None = None
    # IQuestLoopCoder: how many times the layer stack runs, and the loop >= 2 window.
    loop_num: int = 1
    loop_window_size: int = 0
    architectures: tuple[str, ...] = ()
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    torch_dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._validate()

    # -- construction -------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ModelConfig":
        model_type = raw.get("model_type")
        if model_type not in _QKV_BIAS_DEFAULT:
            archs = raw.get("architectures") or []
            raise UnsupportedModelError(
                f"unknown architecture: model_type={model_type!r} architectures={archs!r}; "
                f"loopcoder supports model_type in {sorted(SUPPORTED_MODEL_TYPES)}"
            )
        try:
            hidden = int(raw["hidden_size"])
            n_heads = int(raw["num_attention_heads"])
            values = dict(
                model_type=model_type,
                vocab_size=int(raw["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(raw["intermediate_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=n_heads,
                num_key_value_heads=_kv_heads(model_type, raw, n_heads),
                # Only configs whose head_dim != hidden/heads carry it (Qwen3, some IQuest exports).
                head_dim=int(raw.get("head_dim") or hidden // n_heads),
                **_family_fields(model_type, raw),
            )
        except KeyError as e:
            raise ModelLoadError(f"model config lacks required field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ModelLoadError(f"model config has a malformed field: {e}") from None
        if raw.get("use_sliding_window"):
            # Qwen2 configs carry the flag, released Qwen2.5-Coder checkpoints leave it off.
            raise UnsupportedModelError("qwen2 use_sliding_window=true is not supported")
        # transformers >= 5 writes RoPE settings as one `rope_parameters` object.
        rope = raw.get("rope_parameters") or {}
        eos = raw.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (int(eos),))
        values.update(
            rope_theta=float(raw.get("rope_theta", rope.get("rope_theta", 10000.0))),
            max_position_embeddings=int(raw.get("max_position_embeddings", 4096)),
            qk_norm=model_type == "qwen3",
            sliding_window=_sliding_window(model_type, raw),
            rope_scaling=_parse_rope_scaling(raw.get("rope_scaling") or rope),
            loop_num=int(raw.get("loop_num", 2 if model_type == "iquestloopcoder" else 1)),
            loop_window_size=int(raw.get("loop_window_size", 64 if model_type == "iquestloopcoder" else 0)),
            architectures=tuple(raw.get("architectures") or ()),
            bos_token_id=raw.get("bos_token_id"),
            eos_token_ids=tuple(int(i) for i in eos_ids),
            torch_dtype=str(raw.get("torch_dtype") or "float32"),
            extra={k: v for k, v in raw.items() if k not in {f.name for f in fields(cls)}},
        )
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelLoadError(f"{path} not found: a model directory needs config.json") from None
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{path} must hold a JSON object")
        return cls.from_dict(raw)

    def with_changes(self, **changes: Any) -> "ModelConfig":
        return replace(self, **changes)

    # -- derived sizes ------------------------------------------------------------

    @property
    def is_loop(self) -> bool:
        return self.loop_num > 1

    @property
    def num_kv_cache_layers(self) -> int:
        """K/V tensors kept per token: one per layer and loop (loop-1 global + loop >= 2 local)."""
        return self.num_hidden_layers * self.loop_num

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.num_kv_cache_layers * self.num_key_value_heads * self.head_dim * dtype_bytes

    def num_parameters(self) -> int:
        h, i, hd = self.hidden_size, self.intermediate_size, self.head_dim
        q, kv = self.num_attention_heads * hd, self.num_key_value_heads * hd
        attn = h * q + 2 * h * kv + q * h + (q + 2 * kv if self.qkv_bias else 0) + (h if self.o_bias else 0)
        mlp = (3 if self.mlp == "swiglu" else 2) * h * i + (i + h if self.mlp_bias else 0)
        norm = h * (2 if self.norm == "layer" else 1)  # weight (and LayerNorm's bias)
        layer = attn + mlp + 2 * norm
        if self.is_loop:
            layer += self.num_attention_heads * (hd + 1)  # gate weight + bias
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * layer + embed + norm

    def _validate(self) -> None:
        positive = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads", "head_dim")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ModelLoadError(f"config field {name} must be positive, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ModelLoadError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise ModelLoadError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.norm not in ("rms", "layer"):
            raise ModelLoadError(f"norm must be 'rms' or 'layer', got {self.norm!r}")
        if self.mlp not in MLP_ACTIVATIONS:
            raise ModelLoadError(f"mlp must be one of {sorted(MLP_ACTIVATIONS)}, got {self.mlp!r}")
        if self.hidden_act not in MLP_ACTIVATIONS[self.mlp]:
            raise UnsupportedModelError(f"hidden_act={self.hidden_act!r} is not supported for {self.model_type} "
                                        f"(only {', '.join(MLP_ACTIVATIONS[self.mlp])})")
        if self.loop_num < 1:
            raise ModelLoadError(f"loop_num must be >= 1, got {self.loop_num}")
        if self.is_loop and self.loop_window_size < 1:
            raise ModelLoadError(f"loop_window_size must be >= 1 for a loop model, got {self.loop_window_size}")


def _parse_rope_scaling(raw: Any) -> RopeScaling | None:
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"rope_scaling must be an object, got {raw!r}")
    kind = raw.get("rope_type") or raw.get("type")
    if kind in (None, "default"):
        return None
    if kind not in ("llama3", "linear"):
        raise UnsupportedModelError(f"rope_scaling type {kind!r} is not supported (llama3, linear)")
    return RopeScaling(
        rope_type=kind,
        factor=float(raw.get("factor", 1.0)),
        low_freq_factor=float(raw.get("low_freq_factor", 1.0)),
        high_freq_factor=float(raw.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(raw.get("original_max_position_embeddings", 8192)),
    )


def _kv_heads(model_type: str, raw: dict[str, Any], n_heads: int) -> int:
    if model_type == "starcoder2":
        # transformers would take 2 (StarCoder2-7B's): no guess for a GQA family, the field is required.
        return int(raw["num_key_value_heads"])
    return int(raw.get("num_key_value_heads") or n_heads)  # Llama 1 configs omit it: MHA


def _family_fields(model_type: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The fields whose config.json keys and defaults differ between families: norm, MLP, biases."""
    if model_type == "starcoder2":
        # Starcoder2Config's defaults: use_bias true, norm_epsilon 1e-5, gelu_pytorch_tanh, tied embeddings.
        bias = bool(raw.get("use_bias", True))
        return dict(norm="layer", norm_eps=float(raw.get("norm_epsilon", 1e-5)), mlp="gelu",
                    hidden_act=str(raw.get("hidden_act", "gelu_pytorch_tanh")), qkv_bias=bias, o_bias=bias,
                    mlp_bias=bias, tie_word_embeddings=bool(raw.get("tie_word_embeddings", True)))
    # Llama and Qwen3 carry attention_bias (False in released checkpoints), which puts a bias on
    # q, k, v and o; Qwen2 always has biases on q, k and v only. Llama's mlp_bias puts one on
    # gate, up and down (transformers' LlamaAttention, LlamaMLP, Qwen3Attention).
    attention_bias = bool(raw.get("attention_bias", _QKV_BIAS_DEFAULT[model_type]))
    return dict(
        norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        hidden_act=str(raw.get("hidden_act", "silu")),
        qkv_bias=attention_bias,
        o_bias=attention_bias and model_type in _O_BIAS_TYPES,
        mlp_bias=bool(raw.get("mlp_bias", False)) and model_type in _MLP_BIAS_TYPES,
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
    )


def _sliding_window(model_type: str, raw: dict[str, Any]) -> int | None:
    """Mistral's and StarCoder2's window (null or absent in Mistral 7B v0.2+ and Codestral:
    full attention). Qwen configs carry a `sliding_window` too, used only with
    use_sliding_window (refused)."""
    window = raw.get("sliding_window") if model_type in ("mistral", "starcoder2") else None
    if window is None:
        return None
    if not isinstance(window, int) or window < 1:
        raise ModelLoadError(f"model config has sliding_window={window!r}; expected a positive integer or null")
    return window if window < int(raw.get("max_position_embeddings", 4096)) else None
