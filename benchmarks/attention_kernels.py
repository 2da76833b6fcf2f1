"""Decode attention on a GPU: the Triton kernels against the torch reference and the memory roofline.

Shape: one layer of the 40B-Loop model (40 query heads, 8 KV heads, head_dim 128, bf16,
window 64, 16-token pages scattered at random), a batch of sequences all at one context:

    paged   paged_attention: a dense layer, or loop 1 of a Loop layer
    loop    loop_attention: a loop-2 layer, A over loop 1's pages + B over its own last 64, gated

Roofline: the K/V bytes a step must read (paged: B x context x Hkv x D x 2 (K and V) x 2
bytes; loop: that plus the window's) over the device-to-device copy bandwidth measured in
the same run (bytes read + written per second).

Times, per layer, medians: each case holds several layers' caches (together >= 512 MB, so
that L2 cannot serve a layer from the one before) and calls them in turn, as a model does.
"graph" is device time: one pass over the layers captured in a CUDA graph and replayed.
"eager" is what an eager caller pays per call, host work included: back-to-back calls
between two CUDA events. The torch reference is eager only (a Python loop over sequences).

Run: python benchmarks/attention_kernels.py [--batches 1 8 32] [--contexts 2048 8192 32768]
     [--plot docs/benchmarks/attention_kernels.png] [--json out.json] [--sweep]
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Callable

import torch

from loopcoder.kernels.attention import (
    AttentionMetadata,
    DecodeLaunch,
    decode,
    loop_attention_ref,
    loop_decode_attention_triton,
    paged_attention,
    paged_attention_ref,
    paged_decode_attention_triton,
)
from loopcoder.kernels.attention.common import LOG2E, check_decode_args, split_plan

from cuda_timing import copy_bandwidth, eager_us, graph_us  # benchmarks/: the script's folder is on sys.path

NUM_HEADS, NUM_KV_HEADS, HEAD_DIM, WINDOW, BLOCK_SIZE = 40, 8, 128, 64, 16
DTYPE = torch.bfloat16
LAYER_BYTES = 512 << 20  # each case cycles over layers holding at least this much K/V
MAX_LAYERS = 32


class Case:
    """`batch` sequences of `context` tokens: several layers of random caches (loop 1's and loop 2's)
    behind one set of scattered block tables."""

    def __init__(self, batch: int, context: int, seed: int = 0):
        torch.manual_seed(seed)
        pages = -(-context // BLOCK_SIZE)
        num_blocks = batch * pages
        tables = torch.randperm(num_blocks).view(batch, pages).tolist()
        self.batch, self.context = batch, context
        self.meta = AttentionMetadata.build(tables, [context - 1] * batch, [1] * batch, BLOCK_SIZE, "cuda")
        shape = (num_blocks, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM)
        num_layers = min(MAX_LAYERS, -(-LAYER_BYTES // self.kv_bytes(context)))

        def cache():
            return torch.randn(shape, dtype=DTYPE, device="cuda"), torch.randn(shape, dtype=DTYPE, device="cuda")

        self.layers = [(cache(), cache()) for _ in range(num_layers)]  # (global, local) per layer
        self.q = torch.randn(batch, NUM_HEADS, HEAD_DIM, dtype=DTYPE, device="cuda")
        self.gate_weight = torch.randn(NUM_HEADS, HEAD_DIM, dtype=DTYPE, device="cuda") * 0.05
        self.gate_bias = torch.full((NUM_HEADS,), 2.0, dtype=DTYPE, device="cuda")  # gates near 0.88
        self.scale = HEAD_DIM**-0.5

    def kv_bytes(self, keys: int) -> int:
        return self.batch * keys * NUM_KV_HEADS * HEAD_DIM * 2 * DTYPE.itemsize

    def calls(self, op: str, launch: DecodeLaunch | None = None) -> list[Callable[[], torch.Tensor]]:
        """One call of `op` per layer; launch None: the torch reference."""
        return [functools.partial(getattr(self, op), layer, launch) for layer in range(len(self.layers))]

    def paged(self, layer: int, launch: DecodeLaunch | None) -> torch.Tensor:
        (k, v), _ = self.layers[layer]
        m = self.meta
        if launch is None:
            return paged_attention_ref(self.q, k, v, m, self.scale)
        return paged_decode_attention_triton(self.q, k, v, m.block_tables, m.positions, self.context, self.scale,
                                             launch=launch)

    def loop(self, layer: int, launch: DecodeLaunch | None) -> torch.Tensor:
        global_cache, local_cache = self.layers[layer]
        m, w, b = self.meta, self.gate_weight, self.gate_bias
        if launch is None:
            return loop_attention_ref(self.q, global_cache, local_cache, m, self.scale, WINDOW, w, b)
        return loop_decode_attention_triton(self.q, global_cache, local_cache, m.block_tables, m.positions,
                                            self.context, self.scale, WINDOW, w, b, launch=launch)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def measure(case: Case, bandwidth: float) -> dict:
    paged_bytes = case.kv_bytes(case.context)
    loop_bytes = paged_bytes + case.kv_bytes(min(WINDOW, case.context))
    splits, _ = split_plan(case.batch, NUM_KV_HEADS, case.context, torch.device("cuda"), DecodeLaunch())
    row = dict(batch=case.batch, context=case.context, splits=splits, layers=len(case.layers),
               paged_mb=paged_bytes / 1e6, loop_mb=loop_bytes / 1e6,
               paged_roofline_us=paged_bytes / bandwidth * 1e6, loop_roofline_us=loop_bytes / bandwidth * 1e6)
    for op in ("paged", "loop"):
        row[f"{op}_error"] = rel_error(getattr(case, op)(0, DecodeLaunch()), getattr(case, op)(0, None))
        row[f"{op}_triton_us"] = graph_us(case.calls(op, DecodeLaunch()))
        row[f"{op}_triton_nosplit_us"] = graph_us(case.calls(op, DecodeLaunch(num_splits=1)))
        row[f"{op}_triton_eager_us"] = eager_us(case.calls(op, DecodeLaunch()))
        row[f"{op}_ref_us"] = eager_us(case.calls(op), reps=3)
    return row


def sweep(cases: list[Case]) -> list[dict]:
    """Splits for every case, then tile shapes at two cases: the data behind DecodeLaunch's defaults."""
    rows = []
    for case in cases:
        for splits in (1, 2, 4, 8, 16, 32, 64):
            if splits * 64 <= case.context:
                rows.append(dict(batch=case.batch, context=case.context, splits=splits, block_n=64, num_warps=4,
                                 num_stages=2, us=graph_us(case.calls("paged", DecodeLaunch(num_splits=splits)), 10)))
    picked = [c for c in cases if (c.batch, c.context) in ((1, 32768), (32, 8192))]
    for case in picked:
        for block_n in (32, 64, 128):
            for num_warps in (2, 4, 8):
                for num_stages in (1, 2, 3):
                    launch = DecodeLaunch(block_n=block_n, num_warps=num_warps, num_stages=num_stages)
                    splits, _ = split_plan(case.batch, NUM_KV_HEADS, case.context, torch.device("cuda"), launch)
                    rows.append(dict(batch=case.batch, context=case.context, splits=splits, block_n=block_n,
                                     num_warps=num_warps, num_stages=num_stages,
                                     us=graph_us(case.calls("paged", launch), 10)))
    return rows


def host_us(call: Callable[[], object], n: int = 2000) -> float:
    """Host time per call, not waiting for the GPU (whose work per call here is shorter)."""
    call()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        call()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return 1e6 * elapsed / n


def host_overhead(case: Case) -> list[tuple[str, float]]:
    """Where an eager call's host time goes: the dispatcher, the launcher's checks, Triton's launch."""
    (k, v), _ = case.layers[0]
    m, q = case.meta, case.q
    out = torch.empty_like(q)
    bare_args = (out, q, k, v, m.block_tables, m.positions, out, out, q.stride(0), q.stride(1), out.stride(0),
                 out.stride(1), k.stride(0), k.stride(1), k.stride(2), m.block_tables.stride(0), case.scale * LOG2E,
                 0, case.context, NUM_HEADS // NUM_KV_HEADS)
    bare_consts = dict(BLOCK_SIZE=BLOCK_SIZE, BLOCK_N=64, REP=16, D=HEAD_DIM, WINDOWED=False, SPLIT=False,
                       PRECISION="tf32", num_warps=4, num_stages=2)
    grid = (case.batch, NUM_KV_HEADS, 1)
    return [
        ("torch.empty_like(q)", host_us(lambda: torch.empty_like(q))),
        ("check_decode_args", host_us(lambda: check_decode_args(q, (k, v), m.block_tables, m.positions))),
        ("_paged_decode_kernel[grid](...) alone, 1 split",
         host_us(lambda: decode._paged_decode_kernel[grid](*bare_args, **bare_consts))),
        ("paged_decode_attention_triton, 1 split", host_us(lambda: case.paged(0, DecodeLaunch(num_splits=1)))),
        ("paged_decode_attention_triton, split-K (2 launches)", host_us(lambda: case.paged(0, DecodeLaunch()))),
        ("paged_attention (dispatcher)", host_us(lambda: paged_attention(q, k, v, m, case.scale))),
        ("loop_decode_attention_triton, split-K", host_us(lambda: case.loop(0, DecodeLaunch()))),
    ]


def print_tables(rows: list[dict], device: str, bandwidth: float) -> None:
    print(f"\n{device}, torch {torch.__version__}, copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write)")
    print("40 q heads / 8 KV heads, head_dim 128, bf16, window 64, block size 16; µs per layer (median)\n")
    for op, name in (("paged", "paged_attention (dense layer / loop 1)"), ("loop", "loop_attention (loop 2, fused)")):
        print(f"{name}:\n")
        print("| batch | context | K/V MB | roofline | Triton (graph) | share of roofline | no split-K (graph) | "
              "splits | Triton (eager) | torch ref (eager) | speed-up, eager | rel. error |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            t, roof, eager = r[f"{op}_triton_us"], r[f"{op}_roofline_us"], r[f"{op}_triton_eager_us"]
            print(f"| {r['batch']} | {r['context']:,} | {r[f'{op}_mb']:,.1f} | {roof:,.1f} | {t:,.1f} | {roof / t:.0%} | "
                  f"{r[f'{op}_triton_nosplit_us']:,.1f} | {r['splits']} | {eager:,.1f} | {r[f'{op}_ref_us']:,.1f} | "
                  f"{r[f'{op}_ref_us'] / eager:,.1f}x | {r[f'{op}_error']:.1e} |")
        print()


def print_sweep(rows: list[dict]) -> None:
    print("Triton paged decode, sweep (µs, median of a short run):\n")
    print("| batch | context | splits | block_n | warps | stages | µs |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['context']:,} | {r['splits']} | {r['block_n']} | {r['num_warps']} | "
              f"{r['num_stages']} | {r['us']:,.1f} |")
    print()


def plot(rows: list[dict], path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    batches = sorted({r["batch"] for r in rows})
    colors = dict(zip(batches, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    for ax, op, title in ((axes[0], "paged", "paged_attention (dense / loop 1)"),
                          (axes[1], "loop", "loop_attention (loop 2, fused A + B + gate)")):
        for b in batches:
            rs = [r for r in rows if r["batch"] == b]
            ctx = [r["context"] for r in rs]
            ax.plot(ctx, [r[f"{op}_triton_us"] for r in rs], "o-", color=colors[b], label=f"Triton (graph), batch {b}")
            ax.plot(ctx, [r[f"{op}_triton_eager_us"] for r in rs], "^-.", color=colors[b], alpha=0.6,
                    label=f"Triton (eager), batch {b}")
            ax.plot(ctx, [r[f"{op}_ref_us"] for r in rs], "s--", color=colors[b], alpha=0.6,
                    label=f"torch ref (eager), batch {b}")
            ax.plot(ctx, [r[f"{op}_roofline_us"] for r in rs], ":", color=colors[b], label=f"roofline, batch {b}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context (tokens)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("µs per layer (median)")
    axes[1].legend(fontsize=6, ncol=3)
    fig.suptitle(f"Decode attention, 40B-Loop shape (40/8 heads, D 128, W 64, bf16), {device}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--contexts", type=int, nargs="+", default=[2048, 8192, 32768])
    p.add_argument("--plot", type=Path, help="write the plot (PNG) here")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--sweep", action="store_true", help="also time split counts and tile shapes")
    args = p.parse_args()
    device = torch.cuda.get_device_name()
    bandwidth = copy_bandwidth()
    rows, sweep_rows, host = [], [], []
    for batch in args.batches:
        for context in args.contexts:
            case = Case(batch, context)
            if not host:
                host = host_overhead(case)
            rows.append(measure(case, bandwidth))
            if args.sweep:
                sweep_rows += sweep([case])
            print(json.dumps(rows[-1]), flush=True)
            del case
            torch.cuda.empty_cache()
    if sweep_rows:
        print_sweep(sweep_rows)
    print(f"Host time per eager call, batch {args.batches[0]}, context {args.contexts[0]:,} (µs):\n")
    print("| call | µs |\n|---|---|")
    for name, us in host:
        print(f"| {name} | {us:,.1f} |")
    print_tables(rows, device, bandwidth)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(device=device, torch=torch.__version__, copy_bandwidth=bandwidth,
                                             rows=rows, sweep=sweep_rows, host_us=host), indent=1) + "\n")
    if args.plot:
        plot(rows, args.plot, device)


if __name__ == "__main__":
    main()
