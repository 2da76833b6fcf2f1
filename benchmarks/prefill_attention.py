"""Prefill/extend attention on a GPU: the Triton kernel against FlashAttention (torch SDPA) and the torch reference.

Shapes: one layer of 40B-Loop (40 query heads over 8 KV heads) and of a 32/8 model, head_dim
128, bf16, 16-token pages scattered at random. Cases, one sequence each:

    prefill N    a cold prefill of N tokens (N query rows over N keys, causal)
    chunk P      a 512-token chunk on top of P cached tokens (512 rows over P + 512 keys)

Columns, milliseconds per call (median, eager, CUDA events):

    Triton       kernels.attention.paged_prefill_attention_triton over the pages
    SDPA         torch.nn.functional.scaled_dot_product_attention on the contiguous
                 equivalent (FlashAttention backend where torch has it; K/V expanded to the
                 query heads outside the timing); causal from the bottom right for a chunk
    torch ref    kernels.attention.paged_attention_ref (OOM where its mask does not fit)
    Loop         kernels.attention.loop_prefill_attention_triton: A causal + B window
                 64 + gate, in one kernel; its FLOPs count both branches

TFLOP/s counts the useful work only, 4 x D x Hq per visible (query, key) pair, for every
column; "share" is against the card's dense bf16 peak (a table of data-sheet figures, or
--peak-tflops) and a bf16 matmul measured in the same run.

Run: python benchmarks/prefill_attention.py [--contexts 2048 8192 32768] [--chunk-prefixes 8192 32768]
     [--plot-to docs/benchmarks/prefill_attention.png] [--json out.json] [--sweep]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from loopcoder.kernels.attention import (
    AttentionMetadata,
    PrefillLaunch,
    loop_prefill_attention_triton,
    paged_attention_ref,
    paged_prefill_attention_triton,
)

from cuda_timing import eager_us  # benchmarks/: the script's folder is on sys.path

HEAD_DIM, BLOCK_SIZE, CHUNK, WINDOW = 128, 16, 512, 64
DTYPE = torch.bfloat16
SHAPES = [(40, 8), (32, 8)]  # (query heads, KV heads)
# Dense bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s without sparsity.
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.4, "H200": 989.4, "H800": 989.4, "A100": 312.0,
               "L40S": 362.0, "RTX 4090": 165.2}


def data_sheet_peak(name: str) -> float | None:
    for key, tflops in PEAK_TFLOPS.items():  # in order: "H100 PCIe" before "H100"
        if key in name:
            return tflops
    return None


def time_ms(call: Callable[[], object], reps: int, warmup: int = 2) -> float:
    """Median device-side time of one call, in ms."""
    return eager_us([call], reps, warmup) / 1000


def matmul_tflops(n: int = 8192) -> float:
    a = torch.randn(n, n, dtype=DTYPE, device="cuda")
    b = torch.randn(n, n, dtype=DTYPE, device="cuda")
    return 2 * n**3 / (time_ms(lambda: a @ b, 20, 5) * 1e-3) / 1e12


@dataclass
class Case:
    """One sequence: n_q query rows at the end of `context` tokens, its K/V in scattered pages."""

    kind: str  # "prefill" or "chunk"
    num_heads: int
    num_kv_heads: int
    context: int
    n_q: int

    def build(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        pages = -(-self.context // BLOCK_SIZE)
        table = torch.randperm(pages).tolist()
        self.meta = AttentionMetadata.build([table], [self.context - self.n_q], [self.n_q], BLOCK_SIZE, "cuda")
        shape = (pages, BLOCK_SIZE, self.num_kv_heads, HEAD_DIM)

        def randn(*s):
            return torch.randn(*s, dtype=DTYPE, device="cuda")

        self.k, self.v, self.k2, self.v2 = (randn(*shape) for _ in range(4))  # loop 1's pages, the loop's own
        self.q = randn(self.n_q, self.num_heads, HEAD_DIM)
        self.gate_weight = randn(self.num_heads, HEAD_DIM) * 0.05
        self.gate_bias = randn(self.num_heads)
        self.scale = HEAD_DIM**-0.5

    @property
    def label(self) -> str:
        return f"{self.kind} {self.context - self.n_q if self.kind == 'chunk' else self.context}"

    def visible_pairs(self, window: int | None = None) -> int:
        """(query, key) pairs the causal (or windowed) mask lets through."""
        first = self.context - self.n_q
        if window is None:
            return sum(p + 1 for p in range(first, self.context))
        return sum(min(p + 1, window) for p in range(first, self.context))

    def flops(self, window: int | None = None) -> float:
        return 4.0 * HEAD_DIM * self.num_heads * self.visible_pairs(window)

    def triton(self) -> torch.Tensor:
        return paged_prefill_attention_triton(self.q, self.k, self.v, self.meta, self.scale)

    def loop(self) -> torch.Tensor:
        return loop_prefill_attention_triton(self.q, (self.k, self.v), (self.k2, self.v2), self.meta, self.scale,
                                             WINDOW, self.gate_weight, self.gate_bias)

    def reference(self) -> torch.Tensor:
        return paged_attention_ref(self.q, self.k, self.v, self.meta, self.scale)

    def sdpa_call(self) -> Callable[[], torch.Tensor]:
        """SDPA on contiguous (1, H, L, D) tensors, K/V expanded to the query heads beforehand."""
        table = self.meta.block_tables[0]
        n_rep = self.num_heads // self.num_kv_heads

        def contiguous(cache):  # (pages, bs, Hkv, D) -> (1, Hq, context, D)
            keys = cache[table].flatten(0, 1)[: self.context]
            return keys.repeat_interleave(n_rep, dim=1).transpose(0, 1).unsqueeze(0).contiguous()

        q = self.q.transpose(0, 1).unsqueeze(0).contiguous()  # (1, Hq, n_q, D)
        k, v = contiguous(self.k), contiguous(self.v)
        if self.n_q == self.context:
            return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        from torch.nn.attention.bias import causal_lower_right

        mask = causal_lower_right(self.n_q, self.context)
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)

    def sdpa_out(self, call: Callable[[], torch.Tensor]) -> torch.Tensor:
        return call()[0].transpose(0, 1)  # (n_q, Hq, D)


def sdpa_flash(call: Callable[[], torch.Tensor]) -> tuple[Callable[[], torch.Tensor], str]:
    """The call under the FlashAttention backend if torch has it for these inputs, else torch's choice."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def flash():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return call()

    try:
        flash()
        return flash, "flash"
    except RuntimeError:
        return call, "default"


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def measure(case: Case, reps: int) -> dict:
    case.build()
    row = dict(shape=f"{case.num_heads}/{case.num_kv_heads}", case=case.label, n_q=case.n_q, context=case.context,
               tflop=case.flops() / 1e12, loop_tflop=(case.flops() + case.flops(WINDOW)) / 1e12)
    sdpa, backend = sdpa_flash(case.sdpa_call())
    row["sdpa_backend"] = backend
    row["error_vs_sdpa"] = rel_error(case.triton(), case.sdpa_out(sdpa))
    row["triton_ms"] = time_ms(case.triton, reps)
    row["sdpa_ms"] = time_ms(sdpa, reps)
    row["loop_ms"] = time_ms(case.loop, reps)
    try:
        row["ref_ms"] = time_ms(case.reference, max(1, reps // 5), warmup=1)
    except torch.cuda.OutOfMemoryError:
        row["ref_ms"] = float("nan")
    torch.cuda.empty_cache()
    return row


def sweep(case: Case, reps: int, block_ms: tuple[int, ...] = (64, 128)) -> list[dict]:
    """Tile shapes of the plain and the Loop kernel on one case: the data behind default_launch."""
    case.build()
    rows = []
    for block_m in block_ms:
        for block_n in (32, 64, 128):
            for num_warps in (4, 8):
                for num_stages in (1, 2, 3):
                    launch = PrefillLaunch(block_m, block_n, num_warps, num_stages)
                    row = dict(case=f"{case.num_heads}/{case.num_kv_heads} {case.label}", block_m=block_m,
                               block_n=block_n, num_warps=num_warps, num_stages=num_stages)
                    for name, call in (("plain", paged_prefill_attention_triton), ("loop", loop_prefill_attention_triton)):
                        args = ((case.q, case.k, case.v, case.meta, case.scale) if name == "plain" else
                                (case.q, (case.k, case.v), (case.k2, case.v2), case.meta, case.scale, WINDOW,
                                 case.gate_weight, case.gate_bias))
                        try:
                            row[f"{name}_ms"] = time_ms(lambda: call(*args, launch=launch), reps)
                        except Exception as exc:  # out of shared memory or registers: recorded, not fatal
                            row[f"{name}_ms"] = float("nan")
                            row[f"{name}_error"] = type(exc).__name__
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def print_sweep(rows: list[dict]) -> None:
    print("\nTile sweep (ms, median):\n")
    print("| case | block_m | block_n | warps | stages | plain ms | Loop ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['block_m']} | {r['block_n']} | {r['num_warps']} | {r['num_stages']} | "
              f"{fmt(r['plain_ms'], 3)} | {fmt(r['loop_ms'], 3)} |")


def fmt(x: float, digits: int = 2) -> str:
    return "OOM" if x != x else f"{x:,.{digits}f}"


def print_table(rows: list[dict], device: str, peak: float | None, matmul: float) -> None:
    print(f"\n{device}, torch {torch.__version__}; bf16 peak: data sheet {fmt(peak or float('nan'), 0)} TFLOP/s, "
          f"measured {matmul:,.0f} TFLOP/s (8192³ matmul)")
    print(f"head_dim {HEAD_DIM}, bf16, 16-token pages, one sequence; ms per call (median); "
          f"TFLOP/s of useful work; share of the data-sheet peak / of the measured matmul\n")
    print("| heads q/kv | case | rows | keys | Triton ms | TFLOP/s | share: peak / matmul | SDPA ms | TFLOP/s | "
          "Triton / SDPA time | torch ref ms | Loop (A+B+gate) ms | Loop TFLOP/s | rel. error vs SDPA |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, s = r["tflop"] / (r["triton_ms"] * 1e-3), r["tflop"] / (r["sdpa_ms"] * 1e-3)
        loop = r["loop_tflop"] / (r["loop_ms"] * 1e-3)
        share = f"{t / peak:.0%} / {t / matmul:.0%}" if peak else f"— / {t / matmul:.0%}"
        print(f"| {r['shape']} | {r['case']} | {r['n_q']:,} | {r['context']:,} | {fmt(r['triton_ms'], 3)} | {t:,.0f} | "
              f"{share} | {fmt(r['sdpa_ms'], 3)} ({r['sdpa_backend']}) | {s:,.0f} | "
              f"{r['triton_ms'] / r['sdpa_ms']:.2f} | {fmt(r['ref_ms'], 1)} | {fmt(r['loop_ms'], 3)} | {loop:,.0f} | "
              f"{r['error_vs_sdpa']:.1e} |")


def plot(rows: list[dict], path: Path, device: str, peak: float | None, matmul: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = sorted({r["shape"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(1, len(shapes), figsize=(6.5 * len(shapes), 4.8), sharey=True, squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        rs = [r for r in rows if r["shape"] == shape]
        x = range(len(rs))
        series = [("Triton (paged)", "triton_ms", "tflop"), ("SDPA, contiguous", "sdpa_ms", "tflop"),
                  ("torch ref", "ref_ms", "tflop"), ("Triton Loop (A+B+gate)", "loop_ms", "loop_tflop")]
        width = 0.8 / len(series)
        for i, (name, ms, tflop) in enumerate(series):
            ax.bar([j + (i - 1.5) * width for j in x], [r[tflop] / (r[ms] * 1e-3) for r in rs], width, label=name)
        ax.axhline(matmul, color="k", linestyle="--", linewidth=1, label="bf16 matmul, measured")
        if peak:
            ax.axhline(peak, color="k", linestyle=":", linewidth=1, label="bf16 peak, data sheet")
        ax.set_xticks(list(x), [r["case"] for r in rs], rotation=20)
        ax.set_title(f"{shape} heads, head_dim {HEAD_DIM}")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("TFLOP/s (useful work)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Prefill/extend attention, bf16, {device}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contexts", type=int, nargs="+", default=[2048, 8192, 32768], help="cold prefill lengths")
    p.add_argument("--chunk-prefixes", type=int, nargs="+", default=[8192, 32768],
                   help=f"cached prefixes under a {CHUNK}-token chunk")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, where the table does not know it")
    p.add_argument("--plot-to", type=Path, help="write the plot (PNG) here")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--sweep", action="store_true", help="only time tile shapes (40/8, prefill 8K and chunk on 32K)")
    p.add_argument("--sweep-keystroke", action="store_true",
                   help="only time tile shapes (64-256 query rows) of a keystroke's re-prefill: 257 rows on 8K and 32K")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/prefill_attention.py needs a CUDA GPU: torch.cuda.is_available() is False")
    device = torch.cuda.get_device_name()
    peak = args.peak_tflops or data_sheet_peak(device)
    if args.sweep_keystroke:
        sweep_rows = []
        for prefix in (8192, 32768):
            sweep_rows += sweep(Case("chunk", 40, 8, prefix + 257, 257), args.reps, block_ms=(64, 128, 256))
        print_sweep(sweep_rows)
        if args.json:
            args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(), "sweep": sweep_rows}, indent=1))
        return 0
    if args.sweep:
        sweep_rows = sweep(Case("prefill", 40, 8, 8192, 8192), args.reps)
        sweep_rows += sweep(Case("chunk", 40, 8, 32768 + CHUNK, CHUNK), args.reps)
        print_sweep(sweep_rows)
        return
    matmul = matmul_tflops()
    cases = [Case("prefill", h, kv, n, n) for h, kv in SHAPES for n in args.contexts]
    cases += [Case("chunk", h, kv, prefix + CHUNK, CHUNK) for h, kv in SHAPES for prefix in args.chunk_prefixes]
    cases.sort(key=lambda c: (-c.num_heads, c.kind != "prefill", c.context))
    rows = []
    for case in cases:
        rows.append(measure(case, args.reps))
        print(json.dumps(rows[-1]), flush=True)
        del case.q, case.k, case.v, case.k2, case.v2
    print_table(rows, device, peak, matmul)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(device=device, torch=torch.__version__, peak_tflops=peak,
                                             matmul_tflops=matmul, rows=rows), indent=1) + "\n")
    if args.plot_to:
        plot(rows, args.plot_to, device, peak, matmul)


if __name__ == "__main__":
    main()
