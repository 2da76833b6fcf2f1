"""Where a keystroke's time goes: the GPU kernels of one warm-document re-prefill (a one-token
edit before a bounded suffix), run eagerly under torch.profiler, grouped by kernel, with
the same keystroke timed with CUDA graphs beside it. Random weights in gpu_path.py's shapes.

Run:  python benchmarks/profile_step.py --model 7b --length 8192 [--quant fp8] [--top 25]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

import gpu_path as gp


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(gp.SHAPES), default="7b")
    p.add_argument("--layers", type=int)
    p.add_argument("--quant", choices=("none", "fp8"), default="none")
    p.add_argument("--length", type=int, default=8192)
    p.add_argument("--suffix", type=int, default=gp.SUFFIX_TOKENS)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("profile_step.py profiles a CUDA device; none is visible here", file=sys.stderr)
        return 2
    setup = gp.Setup(args)
    for graphs in (True, False):
        engine = setup.engine(2 * (args.length + args.suffix) + 256, graphs=graphs)
        prefix, suffix = setup.ids(args.length), setup.ids(args.suffix)
        gp.first_token_s(engine, "doc", prefix + suffix)
        times = []
        for i in range(5):
            prefix = prefix + [100 + i]
            times.append(gp.first_token_s(engine, "doc", prefix + suffix))
        print(f"{'graphs' if graphs else 'eager'}: keystroke -> first token {1000 * statistics.median(times):.1f} ms "
              f"(median of 5; {args.model}, {args.length} + {args.suffix} tokens)")
        if not graphs:
            prefix = prefix + [99]
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                gp.first_token_s(engine, "doc", prefix + suffix)
            events = prof.key_averages()
            total = sum(e.device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA) / 1000
            print(f"GPU kernel time {total:.1f} ms in one eager keystroke\n")
            print("| kernel | calls | ms | share |\n|---|---|---|---|")
            rows = sorted((e for e in events if e.device_type == torch.autograd.DeviceType.CUDA and e.device_time_total > 0),
                          key=lambda e: -e.device_time_total)
            for e in rows[: args.top]:
                ms = e.device_time_total / 1000
                print(f"| {e.key[:90]} | {e.count} | {ms:.2f} | {ms / total:.1%} |")
        del engine
        gp.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
