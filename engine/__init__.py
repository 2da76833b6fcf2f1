"""loopcoder's model runtime.

The stable Python hook (outside checks rely on it)::

    from loopcoder.engine import load_model
    m = load_model(path=None, device="cpu", dtype=torch.float32)   # None: the embedded default
    m.logits(ids)            # Tensor[len(ids), vocab], a full forward with no cache
    m.generate(ids, max_new_tokens=16, temperature=0.0)  # list[int], through the warm cached path
    m.tokenizer.encode(text) / m.tokenizer.decode(ids)
"""

from .config import ModelConfig
from .engine import Engine, EngineConfig, GenerationResult
from .errors import LoopcoderError
from .loader import default_model_path, load_model, random_model
from .sampling import SamplingParams

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
