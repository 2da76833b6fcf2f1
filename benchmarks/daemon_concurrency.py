"""Concurrent editors on one engine daemon: aggregate tokens/s and time to first token.

A real `loopcoder engine` process serves N clients at once (N = 1, 4, 16, 32 by default),
each a separate connection, as N editor windows are. Each client edits its own
document in a loop, the engine core's edit-loop workload: type a few characters at the
end of a function body, then ask for a completion (a fixed number of greedy tokens, eos
ignored, so every request decodes the same amount). Every client first opens its
document (the cold prefill, not timed); the timed part is the edit loop.

Measured per concurrency level, in one run:
- aggregate generated tokens per second, over the wall time of the edit loop;
- time to first token as the client sees it (request sent -> first streamed chunk),
  p50 and p95 over all requests;
- the share of prompt tokens served from the cache (warm sessions and shared blocks),
  and the engine's mean batch size (tokens per forward step).

The baseline is the same daemon with one client: scaling is aggregate(N) / aggregate(1).
Writes a table to stdout, JSON to --json and a plot to --plot.

    python benchmarks/daemon_concurrency.py --clients 1,4,16,32 --plot docs/benchmarks/daemon_concurrency.png
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import fmt, machine_info, markdown_table, percentile, save_figure, write_json

from loopcoder.engine.serving.client import DaemonClient
from loopcoder.engine.sampling import SamplingParams

ROOT = Path(__file__).resolve().parents[1]


def document(index: int, functions: int) -> str:
    """A file of small functions, different per client, ending inside a function body."""
    body = "".join(f"def f{index}_{i}(values):\n    \"\"\"Scale values by {i + index}.\"\"\"\n"
                   f"    return [v * {i + index} for v in values]\n\n" for i in range(functions))
    return body + f"def total_{index}(values):\n    result = 0\n    for v in values:\n        result += "


def start_engine(socket_path: Path, args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, "-m", "loopcoder.lsp.cli", "engine", "--socket", str(socket_path),
               "--device", args.device, "--dtype", args.dtype, "--quant", args.quant]
    if args.model:
        command += ["--model", args.model]
    if args.threads:
        command += ["--threads", str(args.threads)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"engine exited: {process.stderr.read().decode()[-2000:]}")
        try:
            DaemonClient(socket_path, client_name="probe").close_connection()
            return process
        except Exception:
            time.sleep(0.2)
    raise SystemExit("engine did not start within 300 s")


def run_level(socket_path: Path, clients: int, args: argparse.Namespace, level: int) -> dict:
    connections = [DaemonClient(socket_path, client_name=f"editor{i}") for i in range(clients)]
    tokenizer = connections[0].tokenizer
    params = SamplingParams(max_new_tokens=args.max_tokens, ignore_eos=True)
    texts = [document(level * 100 + i, args.functions) for i in range(clients)]
    for conn, text in zip(connections, texts):  # open: the cold prefill, untimed
        conn.prefill("doc.py", tokenizer.encode(text))
    before = connections[0].stats()
    ttft: list[float] = []
    prompt_tokens = cached_tokens = generated = 0
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def editor(i: int) -> None:
        nonlocal prompt_tokens, cached_tokens, generated
        conn, text = connections[i], texts[i]
        barrier.wait()
        for edit in range(args.edits):
            text += "xy"[edit % 2]  # a keystroke at the cursor
            sent = time.perf_counter()
            first: list[float] = []
            result = conn.generate_for("doc.py", tokenizer.encode(text), params,
                                       on_token=lambda t, s: first or first.append(time.perf_counter()))
            with lock:
                ttft.append(first[0] - sent)
                prompt_tokens += result.usage.prompt_tokens
                cached_tokens += result.usage.cached_tokens
                generated += result.usage.generated_tokens

    threads = [threading.Thread(target=editor, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    after = connections[0].stats()
    for conn in connections:
        conn.close_connection()
    steps = after["steps"] - before["steps"]
    return {"clients": clients, "wall_s": wall, "generated_tokens": generated, "tokens_per_s": generated / wall,
            "ttft_p50_ms": percentile(ttft, 50) * 1000, "ttft_p95_ms": percentile(ttft, 95) * 1000,
            "ttft_median_ms": statistics.median(ttft) * 1000, "requests": len(ttft),
            "cached_share": cached_tokens / max(1, prompt_tokens),
            "tokens_per_step": (after["batched_tokens"] - before["batched_tokens"]) / max(1, steps),
            "prompt_tokens_per_request": prompt_tokens / max(1, len(ttft))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="1,4,16,32", help="concurrency levels, comma-separated (default 1,4,16,32)")
    p.add_argument("--edits", type=int, default=4, help="keystroke + completion rounds per client (default 4)")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens generated per completion (default 16)")
    p.add_argument("--functions", type=int, default=12, help="functions per document, ~40 tokens each (default 12)")
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--quant", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/out/daemon_concurrency.json")
    p.add_argument("--plot", type=Path, default=ROOT / "benchmarks/out/daemon_concurrency.png")
    args = p.parse_args(argv)
    levels = [int(x) for x in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="loopcoder-bench-") as scratch:
        socket_path = Path(scratch) / "engine.sock"
        engine = start_engine(socket_path, args)
        try:
            rows = [run_level(socket_path, n, args, level) for level, n in enumerate(levels)]
        finally:
            engine.terminate()
            engine.wait(30)
    base = rows[0]["tokens_per_s"]
    table = markdown_table(
        ["clients", "requests", "aggregate tok/s", "vs 1 client", "TTFT p50 ms", "TTFT p95 ms", "p95 vs 1 client",
         "prompt tokens cached", "tokens per step"],
        [[str(r["clients"]), str(r["requests"]), fmt(r["tokens_per_s"], 1), f"{r['tokens_per_s'] / base:.2f}x",
          fmt(r["ttft_p50_ms"]), fmt(r["ttft_p95_ms"]), f"{r['ttft_p95_ms'] / rows[0]['ttft_p95_ms']:.2f}x",
          f"{r['cached_share']:.1%}", fmt(r["tokens_per_step"], 1)] for r in rows])
    print(table)
    write_json(args.json, {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    xs = [r["clients"] for r in rows]
    left.plot(xs, [r["tokens_per_s"] for r in rows], "o-", label="measured")
    left.plot(xs, [base * x for x in xs], ":", color="gray", label="linear in clients")
    left.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="aggregate generated tokens/s",
             title="Throughput")
    left.legend()
    right.plot(xs, [r["ttft_p50_ms"] for r in rows], "o-", label="p50")
    right.plot(xs, [r["ttft_p95_ms"] for r in rows], "s--", label="p95")
    right.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="time to first token (ms)",
              title="Latency as clients see it")
    right.legend()
    save_figure(fig, [args.plot])
    print(f"plot: {args.plot}\njson: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
