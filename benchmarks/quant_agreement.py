"""How often the quantized CPU path (bf16 activations, int4/int8 weights) completes exactly
like the float32 path: greedy 16-token completions at line starts of stdlib files.

A measure of what `--quant auto` changes, until `loopcoder eval` (HumanEval pass@1) exists.
Run: python benchmarks/quant_agreement.py [--prompts N] [--context TOKENS]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from loopcoder.engine import SamplingParams, load_model

FILES = ("typing.py", "argparse.py", "json/encoder.py", "dataclasses.py", "pathlib.py")
PARAMS = SamplingParams(max_new_tokens=16, ignore_eos=True)


def prompts(count: int, context_chars: int, seed: int = 0) -> list[str]:
    root = Path(argparse.__file__).parent
    rng = random.Random(seed)
    out = []
    for i in range(count):
        text = (root / FILES[i % len(FILES)]).read_text()
        starts = [j + 1 for j, c in enumerate(text) if c == "\n" and context_chars < j < len(text) - 200]
        cut = rng.choice(starts)
        out.append(text[cut - context_chars : cut])
    return out


def completions(engine, texts: list[str]) -> tuple[list[list[int]], float]:
    started = time.perf_counter()
    results = [engine.generate_for(f"p{i}", engine.tokenizer.encode(t), PARAMS).token_ids for i, t in enumerate(texts)]
    return results, time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=30)
    p.add_argument("--context", type=int, default=1500, help="characters of file before the cursor")
    args = p.parse_args()
    texts = prompts(args.prompts, args.context)
    reference, ref_s = completions(load_model(dtype=torch.float32, quant="none"), texts)
    print(f"| precision | exact 16-token matches | first token agrees | mean tokens agreeing before first difference | time (s) |")
    print("|---|---|---|---|---|")
    print(f"| float32 (reference) | {len(texts)}/{len(texts)} | 100% | 16.0 | {ref_s:.1f} |")
    for dtype, quant in ((torch.bfloat16, "none"), (torch.bfloat16, "int8"), (torch.bfloat16, "int4")):
        got, secs = completions(load_model(dtype=dtype, quant=quant), texts)
        exact = sum(a == b for a, b in zip(got, reference))
        first = sum(a[:1] == b[:1] for a, b in zip(got, reference)) / len(texts)
        prefix = sum(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), 16) for a, b in zip(got, reference)) / len(texts)
        print(f"| bfloat16, weights {quant} | {exact}/{len(texts)} | {first:.0%} | {prefix:.1f} | {secs:.1f} |")


if __name__ == "__main__":
    main()
