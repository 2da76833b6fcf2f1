"""Model registry: config `model_type` (and HF `architectures`) to implementation class."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from ..errors import UnsupportedModelError
from .llama import LlamaForCausalLM
from .loopcoder import IQuestLoopCoderForCausalLM
from .starcoder2 import Starcoder2ForCausalLM

MODEL_REGISTRY: dict[str, type[LlamaForCausalLM]] = {
    "llama": LlamaForCausalLM,
    "qwen2": LlamaForCausalLM,
    "qwen3": LlamaForCausalLM,
    "mistral": LlamaForCausalLM,
    "starcoder2": Starcoder2ForCausalLM,
    "iquestcoder": LlamaForCausalLM,
    "iquestloopcoder": IQuestLoopCoderForCausalLM,
}

ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "MistralForCausalLM": "mistral",
    "Starcoder2ForCausalLM": "starcoder2",
    "IQuestCoderForCausalLM": "iquestcoder",
    "IQuestLoopCoderForCausalLM": "iquestloopcoder",
}


def model_class(cfg: ModelConfig) -> type[LlamaForCausalLM]:
    for arch in cfg.architectures:
        if arch not in ARCHITECTURES:
            raise UnsupportedModelError(
                f"unknown architecture {arch!r}; supported: {sorted(ARCHITECTURES)}"
            )
    try:
        return MODEL_REGISTRY[cfg.model_type]
    except KeyError:
        raise UnsupportedModelError(f"unknown model_type {cfg.model_type!r}") from None


def build_model(cfg: ModelConfig) -> nn.Module:
    return model_class(cfg)(cfg)
