"""loopcoder's model runtime.

The stable Python hook (outside checks rely on it)::

    from loopcoder.engine import load_model
    m = load_model(path=None, device="cpu", dtype=torch.float32)   # None: the embedded default
    m.logits(ids)            # Tensor[len(ids), vocab], a full forward with no cache
    m.generate(ids, max_new_tokens=16, temperature=0.0)  # list[int], through the warm cached path
    m.tokenizer.encode(text) / m.tokenizer.decode(ids)
"""

import importlib

from .config import ModelConfig
from .errors import LoopcoderError

# Loaded on first use (PEP 562): every module of the engine imports this package first, so
# what it imports, every module pays for. The thin client in engine/serving/ must start
# without torch, triton and the models (tests/test_layout.py), and `loopcoder engine --help`
# without llguidance (sampling's schema check). The hook above still reads as one import.
_LAZY = {
    "EngineAPI": ".api", "GenerationResult": ".api", "SamplingParams": ".sampling",
    "Engine": ".engine", "EngineConfig": ".engine",
    "default_model_path": ".loader", "load_model": ".loader", "random_model": ".loader",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Engine",
    "EngineAPI",
    "EngineConfig",
    "GenerationResult",
    "LoopcoderError",
    "ModelConfig",
    "SamplingParams",
    "default_model_path",
    "load_model",
    "random_model",
]
