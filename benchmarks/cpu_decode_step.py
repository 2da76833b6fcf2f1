"""The CPU decode step in one C call (kernels/decoder_cpu.py) against the same engine layer
by layer, in one run: decode ms a token at several context lengths on the default model (or
--model), the two variants interleaved step by step so that both see the same machine.

Run:  python benchmarks/cpu_decode_step.py [--contexts 512 2048 4096] [--tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from common import fmt, machine_info, markdown_table, new_figure, save_figure, write_json

from loopcoder.engine import load_model
from loopcoder.engine.model_runner import StepInput
from loopcoder.kernels import decoder_cpu

DEFAULT_OUT = Path(__file__).parent / "out"


def timed_steps(engine, context: int, tokens: int) -> dict[str, list[float]]:
    """Prefill `context` token ids, then decode `tokens` steps, each step once per variant on
    its own copy of the sequence (the C step's K/V and the layer-by-layer K/V are kept apart:
    two block tables over one cache)."""
    model, runner, kv = engine.model, engine.runner, engine.kv
    decoder = model.cpu_decoder
    ids = [(i * 7919) % (model.config.vocab_size - 200) + 100 for i in range(context)]
    bs = kv.block_size
    need = (context + tokens + bs - 1) // bs
    blocks = engine.pool.allocate(2 * need)
    tables = {"C step": blocks[:need], "layer by layer": blocks[need:]}
    times: dict[str, list[float]] = {name: [] for name in tables}
    last = {}
    for name, table in tables.items():
        model.cpu_decoder = None  # the prefill runs layer by layer either way (rows > 1)
        last[name] = int(runner.step([StepInput(table, 0, ids)], kv).argmax())
    try:
        for step in range(tokens):
            for name, table in tables.items():
                model.cpu_decoder = decoder if name == "C step" else None
                start = time.perf_counter()
                logits = runner.step([StepInput(table, context + step, [last[name]])], kv)
                times[name].append(time.perf_counter() - start)
                last[name] = int(logits.argmax())
    finally:
        model.cpu_decoder = decoder
        engine.pool.release(blocks)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a GGUF file (default: the embedded default model)")
    p.add_argument("--contexts", type=int, nargs="+", default=[512, 2048, 4096])
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--plot-to", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    engine = load_model(args.model, quant="auto", dtype=None)
    if engine.model.cpu_decoder is None:
        print(f"the C step does not run this model ({engine.model.cpu_decoder_status})", file=sys.stderr)
        return 2
    info = machine_info() | {"precision": engine.config.precision, "threads": args.threads,
                             "kernel": decoder_cpu.decoder_kernel_status(), "loadavg_before": os.getloadavg()[0]}
    rows, results = [], {}
    for context in args.contexts:
        times = timed_steps(engine, context, args.tokens)
        med = {name: 1000 * statistics.median(t[1:]) for name, t in times.items()}  # the first step warms up
        results[context] = med
        rows.append([f"{context:,}", fmt(med["C step"], 2), fmt(1000 / med["C step"], 1), fmt(med["layer by layer"], 2),
                     fmt(1000 / med["layer by layer"], 1), fmt(med["layer by layer"] / med["C step"], 2)])
        print(f"context {context}: C step {med['C step']:.2f} ms, layer by layer {med['layer by layer']:.2f} ms",
              flush=True)
    info["loadavg_after"] = os.getloadavg()[0]
    table = markdown_table(["context", "C step ms/token", "tok/s", "layer by layer ms/token", "tok/s", "speed-up"], rows)
    print(f"\n{info['cpu']}, {args.threads} threads, {info['precision']}\n{info['kernel']}; "
          f"load average {info['loadavg_before']:.2f} before, {info['loadavg_after']:.2f} after\n\n{table}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(args.out_dir / "cpu_decode_step.json", {"info": info, "ms_per_token": results})
    fig, ax = new_figure()
    for name in ("C step", "layer by layer"):
        ax.plot(args.contexts, [results[c][name] for c in args.contexts], marker="o", label=name)
    ax.set_xlabel("context tokens")
    ax.set_ylabel("ms per decoded token (median)")
    ax.set_title(f"CPU decode step, {args.threads} threads")
    ax.legend()
    save_figure(fig, [args.out_dir / "cpu_decode_step.png"] + ([args.plot_to] if args.plot_to else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
