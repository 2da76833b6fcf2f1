"""Cut a loaded single-process model into rank r of world_size (Megatron style).

Per decoder layer, with n = world_size and rank r taking the r-th contiguous slice::

    q_proj, k_proj, v_proj   column-parallel: rows of heads [r*H/n, (r+1)*H/n) (and KV heads
                             likewise), biases (qwen2, starcoder2) cut with their rows
    o_proj                   row-parallel: the matching input columns, then all-reduce; a bias
                             (starcoder2) whole on every rank, added after the all-reduce
    gate_proj, up_proj       column-parallel: rows [r*I/n, (r+1)*I/n) (up's bias with them)
    down_proj                row-parallel: the matching columns, then all-reduce (+ bias, as o_proj)
    gate_projection (Loop)   the per-head weight (H, D) and bias (H,) of this rank's heads
    layer norms              replicated

The embedding and lm_head are vocab-parallel (layers.py). GQA stays consistent: query
head h reads KV head h // (H / Hkv), and cutting both head lists into n contiguous
slices keeps every query head with its KV head on the same rank.

The sharded model's `config` is the rank's local config (its head counts), so a KVCache
built from it holds only this rank's KV heads; `full_config` keeps the original.

`ShardSelector` states the same cut per checkpoint tensor (which rows or columns rank r
keeps), so a rank can read only its slices from the checkpoint (parallel/loading.py).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ModelLoadError
from ..models.layers import Attention, GeluMLP, SwiGLU
from ..models.llama import LlamaForCausalLM
from .group import TensorParallelGroup
from .layers import RowParallelLinear, VocabParallelEmbedding, VocabParallelLMHead, vocab_range


def check_tensor_parallel(cfg: ModelConfig, world_size: int) -> None:
    """Raise ModelLoadError unless every sharded dimension divides by world_size."""
    if world_size < 1:
        raise ModelLoadError(f"tensor-parallel world size must be >= 1, got {world_size}")
    for name in ("num_attention_heads", "num_key_value_heads", "intermediate_size"):
        value = getattr(cfg, name)
        if value % world_size:
            raise ModelLoadError(
                f"cannot split {cfg.model_type} over {world_size} ranks: {name}={value} is not divisible "
                f"by {world_size}; pick a world size that divides num_attention_heads={cfg.num_attention_heads}, "
                f"num_key_value_heads={cfg.num_key_value_heads} and intermediate_size={cfg.intermediate_size}"
            )


def tensor_parallel_config(cfg: ModelConfig, world_size: int) -> ModelConfig:
    """The config one rank sees: its share of the heads and of the MLP width."""
    check_tensor_parallel(cfg, world_size)
    return cfg.with_changes(
        num_attention_heads=cfg.num_attention_heads // world_size,
        num_key_value_heads=cfg.num_key_value_heads // world_size,
        intermediate_size=cfg.intermediate_size // world_size,
    )


@torch.no_grad()
def shard_model(model: LlamaForCausalLM, tp: TensorParallelGroup) -> LlamaForCausalLM:
    """Replace `model`'s parameters in place by rank tp.rank's shard; returns the model."""
    if hasattr(model, "full_config"):
        raise ValueError("model is already sharded")
    full = model.config
    local = tensor_parallel_config(full, tp.world_size)
    for layer in model.model.layers:
        _shard_attention(layer.self_attn, local, tp)
        _shard_mlp(layer.mlp, tp)
        gate = getattr(layer, "gate_projection", None)
        if gate is not None:  # IQuestLoopCoder
            heads = _rows(local.num_attention_heads, tp.rank)
            gate.weight = nn.Parameter(gate.weight[heads].clone(), requires_grad=False)  # (H/n, D)
            gate.bias = nn.Parameter(gate.bias[heads].clone(), requires_grad=False)  # (H/n,)
    start, end = vocab_range(full.vocab_size, tp.rank, tp.world_size)
    embed = VocabParallelEmbedding(model.model.embed_tokens.weight[start:end].clone(), start, tp)
    head_weight = embed.weight if full.tie_word_embeddings else nn.Parameter(
        model.lm_head.weight[start:end].clone(), requires_grad=False)
    model.model.embed_tokens = embed
    model.lm_head = VocabParallelLMHead(head_weight, full.vocab_size, tp)
    model.full_config, model.config, model.tp = full, local, tp
    return model


def random_sharded_model(config: ModelConfig, tp: TensorParallelGroup, dtype: torch.dtype, device: str,
                         seed: int = 0, quant: str = "none") -> LlamaForCausalLM:
    """Rank tp.rank's shard of a model with random weights, allocated at its shard's size only
    (benchmarks: a 40B model over 4 GPUs never exists whole on one). Built and cut on the meta
    device, then allocated and filled on `device` (quantized as drawn with `quant`); each
    rank draws its own values."""
    from ..loader import fill
    from ..models import build_model

    with torch.device("meta"):
        model = shard_model(build_model(config).to(dtype), tp)
    return fill(model, dtype, device, None, seed + tp.rank, quant)


Index = tuple[slice, ...]

# Parameter names (after the model's checkpoint_name) -> the dimension shard_model cuts and
# the sharded size it is cut in: "q" heads x head_dim, "kv" KV heads x head_dim, "mlp" the
# MLP width, "heads" the query heads, "vocab" the vocabulary rows.
_CUTS = [
    (re.compile(r".*\.self_attn\.q_proj\.(weight|bias)"), 0, "q"),
    (re.compile(r".*\.self_attn\.[kv]_proj\.(weight|bias)"), 0, "kv"),
    (re.compile(r".*\.self_attn\.o_proj\.weight"), 1, "q"),
    (re.compile(r".*\.mlp\.(gate|up)_proj\.(weight|bias)"), 0, "mlp"),
    (re.compile(r".*\.mlp\.down_proj\.weight"), 1, "mlp"),
    (re.compile(r".*\.gate_projection\.(weight|bias)"), 0, "heads"),
    (re.compile(r"model\.embed_tokens\.weight|lm_head\.weight"), 0, "vocab"),
]


def shard_index(name: str, full: ModelConfig, tp: TensorParallelGroup) -> Index | None:
    """The index of rank tp.rank's part of parameter `name` (of the unsharded model), as
    shard_model cuts it; None for a replicated parameter (the norms)."""
    local = tensor_parallel_config(full, tp.world_size)
    for pattern, dim, kind in _CUTS:
        if pattern.fullmatch(name):
            if kind == "vocab":
                part = slice(*vocab_range(full.vocab_size, tp.rank, tp.world_size))
            else:
                per_rank = {"q": local.num_attention_heads * full.head_dim, "kv": local.num_key_value_heads * full.head_dim,
                            "mlp": local.intermediate_size, "heads": local.num_attention_heads}[kind]
                part = _rows(per_rank, tp.rank)
            return (slice(None),) * dim + (part,)
    return None


class ShardSelector:
    """For each checkpoint tensor, given its full shape: the index of this rank's part.

    Built from the whole model on the meta device (no memory), before it is sharded: a
    tensor whose full shape differs from the model's is refused before any slice is read
    (a slice of a wrong tensor could have the right shape)."""

    def __init__(self, model: LlamaForCausalLM, tp: TensorParallelGroup) -> None:
        check_tensor_parallel(model.config, tp.world_size)
        self.full, self.tp = model.config, tp
        self.shapes = {n: tuple(p.shape) for n, p in model.named_parameters(remove_duplicate=False)}
        self.canonical = model.checkpoint_name

    def __call__(self, name: str, shape: tuple[int, ...]) -> Index | None:
        canonical = self.canonical(name)
        expected = self.shapes.get(canonical)
        if expected is None:
            return None  # ignored or unexpected: load_weights decides
        if tuple(shape) != expected:
            raise ModelLoadError(f"tensor {name!r} has shape {tuple(shape)}, expected {expected}")
        return shard_index(canonical, self.full, self.tp)


def _rows(per_rank: int, rank: int) -> slice:
    return slice(rank * per_rank, (rank + 1) * per_rank)


def _column(linear: nn.Linear, rows: slice) -> nn.Linear:
    """This rank's output rows (and bias) of `linear`; the output stays local."""
    _check_plain(linear)
    weight = linear.weight[rows]  # (out / n, in)
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    out.weight.copy_(weight)
    if linear.bias is not None:
        out.bias.copy_(linear.bias[rows])
    return out.requires_grad_(False)


def _row(linear: nn.Linear, columns: slice, tp: TensorParallelGroup) -> RowParallelLinear:
    _check_plain(linear)
    bias = None if linear.bias is None else linear.bias.clone()  # (out,): whole, added once after the sum
    return RowParallelLinear(linear.weight[:, columns].clone(), tp, bias)  # (out, in / n)


def _check_plain(linear: nn.Module) -> None:
    if type(linear) is not nn.Linear:
        raise ModelLoadError(f"cannot shard a {type(linear).__name__}: shard the model before quantizing it")


def _shard_attention(attn: Attention, local: ModelConfig, tp: TensorParallelGroup) -> None:
    d = attn.head_dim
    q_rows = _rows(local.num_attention_heads * d, tp.rank)
    kv_rows = _rows(local.num_key_value_heads * d, tp.rank)
    attn.q_proj = _column(attn.q_proj, q_rows)
    attn.k_proj = _column(attn.k_proj, kv_rows)
    attn.v_proj = _column(attn.v_proj, kv_rows)
    attn.o_proj = _row(attn.o_proj, q_rows, tp)
    attn.num_heads, attn.num_kv_heads = local.num_attention_heads, local.num_key_value_heads


def _shard_mlp(mlp: SwiGLU | GeluMLP, tp: TensorParallelGroup) -> None:
    rows = _rows(mlp.up_proj.out_features // tp.world_size, tp.rank)
    if isinstance(mlp, SwiGLU):
        mlp.gate_proj = _column(mlp.gate_proj, rows)
    mlp.up_proj = _column(mlp.up_proj, rows)
    mlp.down_proj = _row(mlp.down_proj, rows, tp)
