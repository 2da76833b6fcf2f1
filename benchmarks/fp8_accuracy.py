"""What FP8 weights (e4m3, per-channel) and activations (per-token) cost in accuracy, against bf16.

1. Per layer, at the 40B-Loop shapes: ‖fp8(x) − bf16(x)‖ / ‖bf16(x)‖ for each projection,
   random N(0, 0.02) weights and unit-normal activations (the benign case: real weights
   have outlier channels, which per-channel scales absorb and per-token scales do not).
2. Per layer, the default model's real weights on its real activations (captured while it
   reads real code).
3. End to end on the default model over real code (stdlib files, 512-token windows): top-1
   agreement of the next-token prediction at every position, and KL(bf16 ‖ fp8). The same
   numbers for int8 and int4 weights, and bf16 against float32 as the noise floor.

Run: python benchmarks/fp8_accuracy.py [--windows 8] [--device cuda] [--json-out R.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from loopcoder.engine import load_model
from loopcoder.engine.quantization import quantize_model
from loopcoder.kernels.fp8_linear import fp8_linear, quantize_fp8

sys.path.insert(0, str(Path(__file__).parent))
from quant_agreement import FILES  # noqa: E402  the same real code as the int4/int8 measurement

SHAPES_40B = {"q_proj": (5120, 5120), "k_proj / v_proj": (1024, 5120), "o_proj": (5120, 5120),
              "gate_proj / up_proj": (27648, 5120), "down_proj": (5120, 27648), "lm_head (kept bf16)": (76800, 5120)}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def synthetic_layers(device: str, rows: int = 64) -> dict[str, float]:
    gen = torch.Generator(device=device).manual_seed(0)
    out = {}
    for name, (n, k) in SHAPES_40B.items():
        w = (torch.randn(n, k, device=device, generator=gen) * 0.02).to(torch.bfloat16)
        x = torch.randn(rows, k, device=device, generator=gen).to(torch.bfloat16)
        out[name] = rel(fp8_linear(x, quantize_fp8(w)), F.linear(x, w))
    return out


def code_windows(tokenizer, count: int, length: int) -> list[list[int]]:
    import argparse as stdlib_anchor

    root = Path(stdlib_anchor.__file__).parent
    windows = []
    for name in FILES:
        ids = tokenizer.encode((root / name).read_text())
        windows += [ids[i : i + length] for i in range(0, len(ids) - length, length)][: max(1, count // len(FILES) + 1)]
    return windows[:count]


def real_layers(engine, windows: list[list[int]]) -> dict[str, float]:
    """Each projection's fp8 error on the inputs it really sees (one window)."""
    inputs: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, out) -> None:  # returns None: the module's output stands
            inputs.setdefault(name, args[0].detach())
        return hook

    hooks = [module.register_forward_hook(keep(name)) for name, module in engine.model.named_modules()
             if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}"]
    engine.logits(windows[0])
    for h in hooks:
        h.remove()
    errors: dict[str, list[float]] = {}
    modules = dict(engine.model.named_modules())
    for name, x in inputs.items():
        w = modules[name].weight.detach()
        kind = name.rsplit(".", 1)[-1]
        errors.setdefault(kind, []).append(rel(fp8_linear(x, quantize_fp8(w)), F.linear(x, w)))
    return {kind: sum(v) / len(v) for kind, v in errors.items()}


def agreement(reference: list[torch.Tensor], other: list[torch.Tensor]) -> dict[str, float]:
    same = total = 0
    kl = 0.0
    for a, b in zip(reference, other):
        same += (a.argmax(-1) == b.argmax(-1)).sum().item()
        total += a.shape[0]
        kl += F.kl_div(F.log_softmax(b, -1), F.log_softmax(a, -1), log_target=True, reduction="sum").item()
    return {"top1": same / total, "kl": kl / total, "positions": total}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json-out", type=Path)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = {"device": args.device if args.device == "cpu" else torch.cuda.get_device_name(), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv)}
    result["synthetic_40b_shapes"] = synthetic_layers(args.device)

    reference_engine = load_model(device=args.device, dtype=torch.bfloat16, quant="none")
    windows = code_windows(reference_engine.tokenizer, args.windows, args.length)
    result["default_model_layers"] = real_layers(reference_engine, windows)
    reference = [reference_engine.logits(w) for w in windows]
    variants = {}
    fp32 = load_model(device=args.device, dtype=torch.float32, quant="none")
    variants["float32 (bf16's own noise)"] = [fp32.logits(w) for w in windows]
    del fp32
    for quant in ("fp8", "int8", "int4"):
        engine = load_model(device=args.device, dtype=torch.bfloat16, quant="none")
        quantize_model(engine.model, quant, torch.bfloat16)
        variants[quant] = [engine.logits(w) for w in windows]
        del engine
    result["end_to_end"] = {name: agreement(reference, logits) for name, logits in variants.items()}
    result["seconds"] = time.perf_counter() - started

    print(f"{result['device']}, torch {result['torch']}, {result['date']}\n")
    print("1. relative error per projection, 40B-Loop shapes, random weights (64 rows)\n")
    print("| projection | fp8 rel. error |\n|---|---|")
    for name, e in result["synthetic_40b_shapes"].items():
        print(f"| {name} | {e:.4f} |")
    print("\n2. relative error per projection, default model, real weights and activations (mean over layers)\n")
    print("| projection | fp8 rel. error |\n|---|---|")
    for name, e in result["default_model_layers"].items():
        print(f"| {name} | {e:.4f} |")
    positions = next(iter(result["end_to_end"].values()))["positions"]
    print(f"\n3. default model against bf16, {len(windows)} windows of {args.length} tokens of real code ({positions} positions)\n")
    print("| weights | top-1 agreement | KL(bf16 ‖ x) nats/token |\n|---|---|---|")
    for name, a in result["end_to_end"].items():
        print(f"| {name} | {a['top1']:.2%} | {a['kl']:.4f} |")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
