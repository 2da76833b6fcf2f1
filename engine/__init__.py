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

# The rest loads on first use (PEP 562), so that importing a light module of the engine
# (errors, config, protocol) does not import torch, triton and every model: the CLI parses
# its arguments and the thin clients start without them (`loopcoder engine --help`: 0.04 s
# against 2.2 s).
_LAZY = {
    "Engine": ".engine", "EngineConfig": ".engine", "GenerationResult": ".engine",
    "default_model_path": ".loader", "load_model": ".loader", "random_model": ".loader",
    "SamplingParams": ".sampling",
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
    "EngineConfig",
    "GenerationResult",
    "LoopcoderError",
    "ModelConfig",
    "SamplingParams",
    "default_model_path",
    "load_model",
    "random_model",
]
