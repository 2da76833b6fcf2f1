"""`loopcoder info`: the model's architecture, size and KV bytes per token (or a config.json's alone)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loopcoder.engine.config import ModelConfig

from .common import add_model_args, human, print_rows
from .loading import cpu_kernel_rows, load_engine, weight_summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--config", type=Path, help="describe a config.json alone (no weights are read or allocated)")


def run(args: argparse.Namespace) -> int:
    if args.config is not None:
        return _info_from_config(args.config)
    engine = load_engine(args)
    cfg = engine.model_config
    dtype_bytes = engine.kv.k.element_size()
    quant_kinds, weight_bytes = weight_summary(engine.model)
    rows = [
        ("model", args.model or "embedded default (SmolLM2-135M-Instruct Q4_1 GGUF)"),
        ("architecture", f"{cfg.model_type} {list(cfg.architectures) or ''}".strip()),
        *_shape_rows(cfg),
        ("vocab", str(cfg.vocab_size)),
        ("parameters", f"{cfg.num_parameters():,}"),
        ("dtype", str(engine.config.dtype).removeprefix("torch.")),
        ("quantization", ", ".join(quant_kinds) or "none"),
        ("precision chosen", engine.config.precision or "as asked"),
        ("weight bytes", human(weight_bytes)),
        ("KV bytes per token", f"{cfg.kv_bytes_per_token(dtype_bytes):,}"),
        ("KV cache", f"{human(engine.kv.nbytes)} = {engine.pool.num_blocks} blocks x {engine.cache_config.block_size} tokens"),
        ("FIM", _fim_name(engine)),
        *cpu_kernel_rows(engine),
    ]
    print_rows(rows)
    return 0


def _info_from_config(path: Path) -> int:
    cfg = ModelConfig.from_json_file(path)
    params = cfg.num_parameters()
    rows = [
        ("config", str(path)),
        ("architecture", cfg.model_type),
        *_shape_rows(cfg),
        ("parameters", f"{params:,}"),
        ("bf16 weight bytes", human(2 * params)),
        ("bf16 bytes streamed per decoded token", human(2 * params * cfg.loop_num)),
        ("bf16 KV bytes per token", f"{cfg.kv_bytes_per_token(2):,}"),
    ]
    print_rows(rows)
    return 0


def _shape_rows(cfg: ModelConfig) -> list[tuple[str, str]]:
    loops = f" x {cfg.loop_num} loops, window {cfg.loop_window_size}" if cfg.is_loop else ""
    return [
        ("layers", f"{cfg.num_hidden_layers}{loops}"),
        ("hidden / heads / kv heads / head_dim",
         f"{cfg.hidden_size} / {cfg.num_attention_heads} / {cfg.num_key_value_heads} / {cfg.head_dim}"),
    ]


def _fim_name(engine: Any) -> str:
    fim = getattr(engine.tokenizer, "fim_format", None)
    if fim is None:
        return "none (completes from the prefix only; a fimTemplate setting gives one)"
    return f"{fim.name}, {fim.order.upper()}: {fim.build('{prefix}', '{suffix}')}"
