"""GGUF blocks on the GPU (kernels/gguf_triton.py): the Triton path that `gguf_linear` takes,
per type, at a 7B layer's shapes and decode-to-prefill row counts, against bf16 cuBLAS on
the dequantized weight and the memory roofline of reading the blocks once.

Per type, shape and row count M:

    path            what gguf_linear runs: the GEMV (1 row), tl.dot tiles (2..CUBLAS_MIN_ROWS-1),
                    or the Triton dequantizer + cuBLAS (from CUBLAS_MIN_ROWS)
    fused, dequant  the fused kernel and the dequantizer + cuBLAS, each at every M (the threshold)
    bf16 cuBLAS     F.linear on the weight already dequantized to bf16 (what --quant none runs)
    roofline        the blocks' bytes at the memory bandwidth: 3.35 TB/s on an H100 (SXM), 4.8 on
                    an H200, else the measured device-to-device copy (--bandwidth overrides)
    GB/s, % roof    the blocks' bytes over the path's time, and roofline / path

Before timing, each shape's output is checked against the float32 product of the blocks
(`gguf_linear_ref`): max |out - ref| / max |ref| over TOLERANCE exits 1 after the table.
Times are device times: `--calls` products (cycling over enough weight copies that L2
cannot serve one from the last) captured in a CUDA graph, median of 50 replays.

Run:  python benchmarks/gguf_gpu.py [--types Q4_K,Q6_K] [--rows 1,8,64,512] [--sweep]
          [--json-out R.json] [--plot-to P.png]
      python benchmarks/gguf_gpu.py --check-only          correctness at every shape, no timing
      TRITON_INTERPRET=1 python benchmarks/gguf_gpu.py --smoke   one tiny shape on the CPU
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from loopcoder.kernels import gguf_linear as G
from loopcoder.kernels import gguf_triton as T

from common import fmt, markdown_table, new_figure, save_figure  # benchmarks/: the script's folder is on sys.path
from cuda_timing import copy_bandwidth, graph_us

# A 7B layer (Llama 2 7B: hidden 4096, MLP 11008): o (and each of q, k, v), gate/up joined, down.
SHAPES = {"o": (4096, 4096), "gate_up": (22016, 4096), "down": (4096, 11008)}
SMOKE_SHAPES = {"tiny": (48, 512)}
ROWS = (1, 8, 64, 512)
NOMINAL_BANDWIDTH = (("H200", 4.8e12), ("H100", 3.35e12))  # bytes/s, by device name (H100 PCIe: measured)
TOLERANCE = 1e-2  # max |out - ref| / max |ref| in bf16 (bf16 output and, for tl.dot, bf16 weights)
L2_BYTES = 64 << 20
HALF_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2],
               "Q6_K": [208]}
SWEEP = [T.GGUFLaunch(block_m=1, block_n=bn, sub_blocks=sb, num_warps=w)
         for bn, sb, w in itertools.product((32, 64, 128), (1, 2, 4), (2, 4, 8))]
SWEEP_DOT = [T.GGUFLaunch(block_m=16, block_n=bn, sub_blocks=sb, use_dot=True, num_warps=w, num_stages=s)
             for bn, sb, w, s in itertools.product((32, 64, 128), (1, 2), (4, 8), (2, 3))]


def random_weight(name: str, n: int, k: int, device: str, gen: torch.Generator) -> G.GGUFWeight:
    """Random codes and bits, float16 fields small and finite (as tests/kernels/gguf_helpers.py)."""
    t = G.GGUF_TYPES[name]
    blocks = torch.randint(0, 256, (n, k // t.block_elems, t.block_bytes), dtype=torch.uint8, device=device,
                           generator=gen)
    for at in HALF_FIELDS[name]:
        half = (torch.randn(n, k // t.block_elems, 1, device=device, generator=gen) * 0.01).half()
        blocks[..., at:at + 2] = half.view(torch.uint8)
    return G.GGUFWeight(blocks.reshape(n, -1), t, k)


def short(launch: T.GGUFLaunch) -> str:
    """"gemv n64 sub2 split4 w4" or "dot m16 n64 sub2 split1 w4 st2"."""
    kind = f"dot m{launch.block_m}" if launch.use_dot else "gemv"
    stages = f" st{launch.num_stages}" if launch.use_dot else ""
    return f"{kind} n{launch.block_n} sub{launch.sub_blocks} split{launch.split_k} w{launch.num_warps}{stages}"


def path_name(rows: int) -> str:
    return "dequant+cuBLAS" if rows >= T.CUBLAS_MIN_ROWS else "GEMV" if rows == 1 else "tl.dot"


def scaled_error(out: torch.Tensor, x: torch.Tensor, weight: G.GGUFWeight) -> float:
    ref = G.gguf_linear_ref(x.float(), weight)
    return float((out.float() - ref).abs().max() / ref.abs().max())


def bandwidth_for(device_name: str, override: float | None) -> tuple[float, str]:
    if override:
        return override * 1e12, "--bandwidth"
    for key, value in NOMINAL_BANDWIDTH:
        if key in device_name and "PCIe" not in device_name:
            return value, f"nominal {key}"
    return copy_bandwidth() / 2, "measured copy (bytes read per second)"


def timer(device: str, calls: int):
    """fn(i) -> device microseconds per call: CUDA graphs on the GPU, wall clock on the CPU (smoke)."""
    if device == "cuda":
        return lambda fn: graph_us([lambda i=i: fn(i) for i in range(calls)], replays=50)

    def wall(fn) -> float:
        start = time.perf_counter()
        fn(0)
        return 1e6 * (time.perf_counter() - start)

    return wall


def measure(name: str, shape: tuple[int, int], rows_list: list[int], args, device: str, bandwidth: float,
            gen: torch.Generator) -> list[dict]:
    n, k = shape
    weights = [random_weight(name, n, k, device, gen)]
    q_bytes = weights[0].nbytes()
    copies = 1 if device != "cuda" or args.check_only else max(2, -(-2 * L2_BYTES // q_bytes))
    weights += [random_weight(name, n, k, device, gen) for _ in range(copies - 1)]
    dense = [] if args.check_only or device != "cuda" else [
        T.gguf_dequantize_triton(w, torch.bfloat16) for w in weights[:max(2, -(-2 * L2_BYTES // (2 * n * k)))]]
    time_us = timer(device, args.calls)
    out = []
    for rows in rows_list:
        x = torch.randn(rows, k, device=device, generator=gen).to(args.dtype)
        row = {"type": name, "shape": f"{n}x{k}", "n": n, "k": k, "rows": rows, "path": path_name(rows),
               "bytes": q_bytes, "error": scaled_error(G.gguf_linear(x, weights[0]), x, weights[0])}
        if not args.check_only:
            def w(i: int) -> G.GGUFWeight:  # a different copy each call: none is in L2 from the last
                return weights[i % len(weights)]

            row["path_us"] = time_us(lambda i: G.gguf_linear(x, w(i)))
            row["fused_us"] = time_us(lambda i: T.gguf_matmul(x, w(i)))
            row["dequant_us"] = time_us(lambda i: F.linear(x, T.gguf_dequantize_triton(w(i), x.dtype)))
            row["bf16_us"] = time_us(lambda i: F.linear(x, dense[i % len(dense)])) if dense else float("nan")
            row["roofline_us"] = 1e6 * q_bytes / bandwidth if bandwidth else float("nan")
            row["gbps"] = q_bytes / row["path_us"] / 1e3
            row["launch"] = short(T.matmul_launch(rows, n, k, _sms(device)))
            if args.sweep and rows in (1, 8):
                row.update(sweep(x, weights, time_us))
        out.append(row)
        print(table_row(row, args.check_only), flush=True)
    return out


def _sms(device: str) -> int:
    return torch.cuda.get_device_properties(0).multi_processor_count if device == "cuda" else 4


def sweep(x: torch.Tensor, weights: list[G.GGUFWeight], time_us) -> dict:
    """The fused kernel's tilings at this shape (split-K from the heuristic's rule): the best five."""
    m, k = x.shape
    n = weights[0].shape[0]
    split = T.matmul_launch(m, n, k, _sms(x.device.type)).split_k
    tried = {}
    for launch in SWEEP if m == 1 else SWEEP_DOT:
        for s in sorted({1, split}):
            variant = T.GGUFLaunch(**{**asdict(launch), "split_k": s})
            try:
                tried[short(variant)] = time_us(
                    lambda i, v=variant: T.gguf_matmul(x, weights[i % len(weights)], launch=v))
            except Exception as exc:  # a tiling the compiler refuses (shared memory, registers)
                print(f"  {variant}: {type(exc).__name__}: {str(exc)[:100]}", file=sys.stderr)
    best = sorted(tried.items(), key=lambda kv: kv[1])[:5]
    return {"best_us": best[0][1] if best else float("nan"), "best": best[0][0] if best else "", "top5": best}


HEADERS = ["type", "shape (N x K)", "M", "path", "max err / max", "path µs", "fused µs", "dequant+cuBLAS µs",
           "bf16 cuBLAS µs", "roofline µs", "GB/s", "% roofline", "heuristic launch", "best swept µs", "best launch"]


def table_row(r: dict, check_only: bool) -> str:
    cells = [r["type"], r["shape"], str(r["rows"]), r["path"], f"{r['error']:.1e}"]
    if not check_only:
        cells += [fmt(r["path_us"], 1), fmt(r["fused_us"], 1), fmt(r["dequant_us"], 1), fmt(r["bf16_us"], 1),
                  fmt(r["roofline_us"], 1), fmt(r["gbps"]), fmt(100 * r["roofline_us"] / r["path_us"]) + "%",
                  r["launch"], fmt(r.get("best_us", float("nan")), 1), r.get("best", "")]
    return "| " + " | ".join(cells) + " |"


def plot(r: dict, path: Path) -> None:
    rows_list = sorted({row["rows"] for row in r["results"]})
    fig, axes = new_figure(14, 3.2 * len(rows_list))
    fig.clf()
    series = [("roofline_us", "roofline (blocks' bytes)"), ("path_us", "Triton path (gguf_linear)"),
              ("bf16_us", "bf16 cuBLAS, dequantized weight")]
    for j, rows in enumerate(rows_list):
        ax = fig.add_subplot(len(rows_list), 1, j + 1)
        data = [row for row in r["results"] if row["rows"] == rows]
        labels = [f"{row['type']} {row['shape']}" for row in data]
        width = 0.8 / len(series)
        for s, (key, label) in enumerate(series):
            ax.bar([i + s * width for i in range(len(data))], [row[key] for row in data], width, label=label)
        ax.set_xticks([i + 0.4 for i in range(len(data))], labels, rotation=30, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel(f"M={rows}: µs")
        if j == 0:
            ax.set_title(f"GGUF blocks on the GPU, {r['device']}, {r['date']}")
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, [path])
    print(f"plot: {path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--types", default=",".join(G.GGUF_TYPES))
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"of {', '.join(SHAPES)}")
    p.add_argument("--rows", default=",".join(map(str, ROWS)))
    p.add_argument("--calls", type=int, default=10, help="products per captured graph")
    p.add_argument("--bandwidth", type=float, help="TB/s for the roofline (default: by device name, else measured)")
    p.add_argument("--check-only", action="store_true", help="correctness at every shape, no timing")
    p.add_argument("--sweep", action="store_true", help="also time other tilings of the fused kernel at 1 and 8 rows")
    p.add_argument("--smoke", action="store_true", help="one tiny shape on the CPU under TRITON_INTERPRET=1")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--plot-to", type=Path)
    args = p.parse_args()
    if args.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("--smoke runs the kernels under Triton's interpreter: set TRITON_INTERPRET=1", file=sys.stderr)
            return 2
        device, shapes, args.dtype = "cpu", SMOKE_SHAPES, torch.float16  # the interpreter's tl.dot takes no bf16
        os.environ["LOOPCODER_KERNELS"] = "triton"  # the dispatcher takes the interpreter only when forced
    elif not torch.cuda.is_available():
        print("gguf_gpu.py measures a CUDA device; none is visible here (--smoke runs on the CPU)", file=sys.stderr)
        return 2
    else:
        device, shapes, args.dtype = "cuda", {s: SHAPES[s] for s in args.shapes.split(",")}, torch.bfloat16
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (Triton interpreter)"
    bandwidth, source = (0.0, "none") if device != "cuda" or args.check_only else bandwidth_for(name, args.bandwidth)
    r = {"device": name, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "bandwidth": bandwidth, "bandwidth_source": source, "cublas_min_rows": T.CUBLAS_MIN_ROWS,
         "command": " ".join(sys.argv), "results": []}
    print(f"{name}, torch {torch.__version__}; roofline bandwidth {bandwidth / 1e12:.2f} TB/s ({source})\n")
    headers = HEADERS[:5] if args.check_only else HEADERS
    print(markdown_table(headers, []))
    gen = torch.Generator(device=device).manual_seed(0)
    rows_list = [int(v) for v in args.rows.split(",")]
    started = time.perf_counter()
    for kind in args.types.split(","):
        for shape in shapes.values():
            r["results"] += measure(kind, shape, rows_list, args, device, bandwidth, gen)
            if device == "cuda":
                torch.cuda.empty_cache()
    wrong = [row for row in r["results"] if not row["error"] <= TOLERANCE]
    print(f"\n{len(r['results'])} products in {time.perf_counter() - started:.0f} s; "
          f"{len(wrong)} over the error tolerance {TOLERANCE:g}")
    for row in wrong:
        print(f"MISMATCH: {row['type']} {row['shape']} M={row['rows']}: error {row['error']:.3g}", file=sys.stderr)
    if args.json_out:
        args.json_out.write_text(json.dumps(r, indent=1))
    if args.plot_to and not args.check_only:
        plot(r, args.plot_to)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
