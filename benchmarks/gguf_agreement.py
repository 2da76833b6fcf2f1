"""Does `--quant gguf` compute what llama.cpp computes from the same file? Per GGUF type.

For each file, the same token ids go through loopcoder (`--quant gguf`, float32 activations,
the file's blocks computed as stored) and llama-cpp-python (its own CPU kernels, which also
quantize the activations for their dot products), and every position's logits are compared:
top-1 agreement, and the logits' error relative to their norm. A third column compares
loopcoder with the same file dequantized to float32 (`--quant none`), which isolates what
its int8 activations cost. loopcoder's logits come one token a step (decode, where the
int8-activation kernel runs); a forward over a whole window (prefill rows, a float32 GEMM on
the dequantized blocks) is reported against float32 beside them.

Files: the embedded default (Q4_1 layers, a Q8_0 head; real code from the stdlib as input),
and for every type a small random llama model written with the gguf package (every linear
layer in that type; random token ids as input).

Run: `make bench-peers` (once, installs llama-cpp-python), then
     python benchmarks/gguf_agreement.py [--positions N] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' GGUF writer and K-quant quantizers

from loopcoder.engine import load_model  # noqa: E402
from loopcoder.engine.loader import default_model_path  # noqa: E402
from loopcoder.kernels.gguf_linear import GGUF_TYPES, cpu_kernel_status  # noqa: E402

CODE_FILES = ("typing.py", "argparse.py", "json/encoder.py", "dataclasses.py", "pathlib.py")


def code_ids(engine, positions: int) -> list[list[int]]:
    """Windows of `positions` tokens from stdlib files: real code the model has seen the like of."""
    root = Path(argparse.__file__).parent
    out = []
    for name in CODE_FILES:
        ids = engine.tokenizer.encode((root / name).read_text())
        out.append(ids[1000 : 1000 + positions])
    return out


def have_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def llama_logits(path: Path, windows: list[list[int]], n_ctx: int) -> list[np.ndarray] | None:
    """llama.cpp's logits of every position, or None where llama-cpp-python is not installed."""
    if not have_llama_cpp():
        return None
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, logits_all=True, verbose=False, n_threads=torch.get_num_threads())
    out = []
    for ids in windows:
        llm.reset()
        llm.eval(ids)
        out.append(np.array(llm.scores[: len(ids)], dtype=np.float64))
    return out


def ours(path: Path, quant: str, windows: list[list[int]], decode: bool = False) -> list[np.ndarray]:
    """Every position's logits: from one forward over the window (prefill rows: the blocks
    are dequantized for a float32 GEMM), or with `decode` one token a step, as generation
    runs (one row: the int8-activation kernel)."""
    engine = load_model(path, quant=quant, dtype=torch.float32)
    if not decode:
        return [engine.logits(ids).double().numpy() for ids in windows]
    out = []
    for w, ids in enumerate(windows):
        out.append(np.stack([engine.sync(f"w{w}", ids[: i + 1]).double().numpy() for i in range(len(ids))]))
    return out


def compare(a: list[np.ndarray], b: list[np.ndarray] | None) -> tuple[float, float]:
    """(top-1 agreement over every position, median over positions of |a - b| / |b|); NaN
    without b (no llama.cpp)."""
    if b is None:
        return float("nan"), float("nan")
    top = np.concatenate([x.argmax(-1) == y.argmax(-1) for x, y in zip(a, b)])
    err = np.concatenate([np.linalg.norm(x - y, axis=-1) / np.linalg.norm(y, axis=-1) for x, y in zip(a, b)])
    return float(top.mean()), float(np.median(err))


def random_model_file(kind: str, directory: Path) -> Path:
    from tests.engine.test_gguf_blocks import write

    return write(directory / f"random-{kind}.gguf", "llama", {"*": kind, "token_embd": "F32", "output": kind})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--positions", type=int, default=128, help="tokens per window (5 windows a file)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--types", default=",".join(GGUF_TYPES), help="the GGUF types of the random models, comma-separated")
    p.add_argument("--windows", type=int, default=5, help="windows of --positions tokens a file")
    p.add_argument("--no-default", action="store_true", help="leave out the embedded default model")
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        files = [] if args.no_default else [("default (Q4_1, Q8_0 head)", default_model_path(), "code")]
        kinds = [k for k in args.types.split(",") if k]
        unknown = sorted(set(kinds) - set(GGUF_TYPES))
        if unknown:
            p.error(f"--types: {', '.join(unknown)} not among {', '.join(GGUF_TYPES)}")
        files += [(f"random llama, {kind}", random_model_file(kind, Path(tmp)), "random") for kind in kinds]
        if not have_llama_cpp():
            print("llama-cpp-python is not installed (make bench-peers): its columns stay empty", flush=True)
        for label, path, source in files:
            if source == "code":
                windows = code_ids(load_model(path, quant="none", dtype=torch.float32), args.positions)[: args.windows]
            else:
                rng = np.random.default_rng(0)
                windows = [rng.integers(5, 64, size=min(args.positions, 200)).tolist() for _ in range(args.windows)]
            gguf = ours(path, "gguf", windows, decode=True)
            exact = ours(path, "none", windows)
            peer = llama_logits(path, windows, n_ctx=max(map(len, windows)) + 8)
            (top_peer, err_peer), (top_exact, err_exact) = compare(gguf, peer), compare(gguf, exact)
            top_peer_exact, err_peer_exact = compare(exact, peer)
            top_prefill, err_prefill = compare(ours(path, "gguf", windows), exact)
            rows.append(dict(file=label, positions=sum(map(len, windows)), top1_vs_llama=top_peer, err_vs_llama=err_peer,
                             top1_vs_float=top_exact, err_vs_float=err_exact, float_top1_vs_llama=top_peer_exact,
                             float_err_vs_llama=err_peer_exact, prefill_top1_vs_float=top_prefill,
                             prefill_err_vs_float=err_prefill))
            print(f"[{time.perf_counter() - started:6.1f} s] {label}: top-1 vs llama.cpp {top_peer:.2%}, "
                  f"vs float32 {top_exact:.2%}", flush=True)
    header = ("| file | positions | decode: top-1 = llama.cpp | decode: logit error vs llama.cpp | decode: top-1 = float32 "
              "of the blocks | decode: logit error vs float32 | prefill rows vs float32: top-1, error | "
              "float32 of the blocks vs llama.cpp: top-1, error |\n|---|---|---|---|---|---|---|---|")
    def pct(x: float, digits: int) -> str:
        return "n/a" if x != x else f"{x:.{digits}%}"  # NaN: no llama.cpp

    lines = [header] + [
        f"| {r['file']} | {r['positions']} | {pct(r['top1_vs_llama'], 1)} | {pct(r['err_vs_llama'], 2)} | "
        f"{pct(r['top1_vs_float'], 1)} | {pct(r['err_vs_float'], 2)} | {pct(r['prefill_top1_vs_float'], 1)}, "
        f"{pct(r['prefill_err_vs_float'], 2)} | {pct(r['float_top1_vs_llama'], 1)}, {pct(r['float_err_vs_llama'], 2)} |"
        for r in rows]
    table = "\n".join(lines)
    print(f"\n{cpu_kernel_status()}; {args.threads} threads\n\n{table}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "gguf_agreement.json").write_text(json.dumps(rows, indent=1))
    (args.out_dir / "gguf_agreement.md").write_text(table + "\n")
    plot(rows, args.out_dir / "gguf_agreement.png")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [0 if r["top1_vs_llama"] != r["top1_vs_llama"] else 100 * r["top1_vs_llama"] for r in rows], 0.4,
           label="top-1 = llama.cpp")
    ax.bar(x + 0.2, [100 * r["top1_vs_float"] for r in rows], 0.4, label="top-1 = float32 of the blocks")
    ax.axhline(98, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, [r["file"].replace("random llama, ", "") for r in rows], rotation=20, fontsize=8)
    ax.set_ylim(80, 100.5)
    ax.set_ylabel("% of positions")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
