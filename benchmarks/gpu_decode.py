"""Batch-1 decode on a GPU with random weights in real shapes, against the memory roofline.

The eager reference path (torch ops, paged attention gathered per sequence): the baseline
the GPU issue's kernels must beat. Roofline = bytes streamed per token (weights x loops,
plus the K/V read) / device-to-device copy bandwidth measured in the same run.

Run: python benchmarks/gpu_decode.py [--config docs/examples/iquest-coder-40b-loop.config.json]
     [--layers N] [--context 2048] [--tokens 32]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from loopcoder.engine.config import ModelConfig
from loopcoder.engine.engine import Engine, EngineConfig
from loopcoder.engine.loader import random_model
from loopcoder.engine.quantization import weight_bytes
from loopcoder.engine.sampling import SamplingParams

DENSE_7B = dict(model_type="iquestcoder", vocab_size=76800, hidden_size=4096, intermediate_size=14336,
                num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                rope_theta=500000.0, max_position_embeddings=32768)


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second."""
    a = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    torch.cuda.synchronize()
    return 2 * a.numel() * 10 / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="config.json (default: a dense 7B-class IQuest-Coder shape)")
    p.add_argument("--layers", type=int, default=None, help="keep only this many layers (fit the card)")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--tokens", type=int, default=32)
    args = p.parse_args()
    raw = json.load(open(args.config)) if args.config else dict(DENSE_7B)
    if args.layers:
        raw["num_hidden_layers"] = args.layers
    cfg = ModelConfig.from_dict(raw)
    bw = copy_bandwidth()
    model = random_model(cfg, torch.bfloat16, "cuda")
    engine = Engine(model, None, EngineConfig(device="cuda", dtype=torch.bfloat16, kv_budget_bytes=8 << 30,
                                             prefill_chunk=2048))
    ids = torch.randint(0, cfg.vocab_size, (args.context,)).tolist()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    engine.prefill("doc", ids)
    torch.cuda.synchronize()
    prefill_s = time.perf_counter() - t0
    params = SamplingParams(max_new_tokens=args.tokens, ignore_eos=True)
    engine.generate_for("doc", ids + [1], params)  # warm-up
    result = engine.generate_for("doc", ids + [2], params)
    ms_per_token = 1000 * (result.timings.total_s - result.timings.first_token_s) / (args.tokens - 1)
    streamed = weight_bytes(model) * cfg.loop_num + (args.context * cfg.kv_bytes_per_token(2))
    roofline_ms = 1000 * streamed / (bw / 2)  # a copy moves each byte twice
    print(f"| model | layers | context | prefill tok/s | decode ms/token | roofline ms/token | share |")
    print(f"|---|---|---|---|---|---|---|")
    print(f"| {cfg.model_type} | {cfg.num_hidden_layers} | {args.context} | {args.context / prefill_s:,.0f} | "
          f"{ms_per_token:.2f} | {roofline_ms:.2f} | {roofline_ms / ms_per_token:.0%} |")
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, copy bandwidth {bw / 1e12:.2f} TB/s "
          f"(read+write), weights {weight_bytes(model) / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
