"""The engine daemon under faults (issue 21): what a careless or hostile client costs the others.

A real `loopcoder engine` process (the default model unless --model) with its HTTP API on a
loopback port. Five probes, each with the figure that says whether it held:
- fuzz: random request frames on the socket; every request must get exactly one answer;
- kill storm: client processes SIGKILLed mid-stream; the work they left must be freed and
  the daemon's RSS must come back to within 10% of where it settled after the first storm;
- unread answers: a client sends `hello`s (each answer ~1.5 MB) and never reads; the
  daemon's growth, and another client's latency meanwhile;
- huge prompt: a 16 MiB prompt on the HTTP API while a socket client types; that client's
  latency against the same requests with no huge prompt (the baseline, in this run);
- daemon kill: an autostarting client's daemon is SIGKILLed mid-request; the time until its
  next request is answered (a new daemon, model load included).

Writes a table to stdout, JSON to --json and a plot to --plot.

    python benchmarks/faults.py --json docs/benchmarks/faults.json --plot docs/benchmarks/faults.png
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from common import fmt, machine_info, markdown_table, save_figure, write_json

from loopcoder.engine.errors import LoopcoderError
from loopcoder.engine.serving.client import AutoStart, DaemonClient
from loopcoder.engine.serving.protocol import FrameDecoder, encode
from loopcoder.engine.sampling import SamplingParams

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fault_probes", ROOT / "tests" / "faults" / "probes.py")
probes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probes)  # kill_storm, rss_bytes, settle: shared with tests/faults/

TYPING = SamplingParams(max_new_tokens=4, ignore_eos=True)
MB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_engine(socket_path: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, "-m", "loopcoder.lsp.cli", "engine", "--socket", str(socket_path),
               "--threads", str(args.threads), "--http", f"127.0.0.1:{port}", *(["--model", args.model] if args.model else [])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not probes.settle(lambda: _answers(socket_path) or process.poll() is not None, timeout=300):
        raise SystemExit("the engine did not start within 300 s")
    if process.poll() is not None:
        raise SystemExit(f"the engine exited with status {process.returncode}")
    return process


def _answers(socket_path: Path) -> bool:
    try:
        DaemonClient(socket_path, client_name="probe").close_connection()
        return True
    except LoopcoderError:
        return False


def random_request(rng: random.Random) -> dict:
    junk = [None, True, -1, 2**40, 1.5, "", "x" * rng.randint(0, 50), [1, "a"], {"a": 1}, b"\x00"]
    request = {"op": rng.choice(["hello", "open", "sync", "close", "generate", "cancel", "stats", "nope", 7])}
    for name in rng.sample(["key", "ids", "params", "priority", "stream", "target", "keep_cached", "stop_dedent"], rng.randint(0, 5)):
        request[name] = rng.choice(junk + {
            "key": ["doc"], "ids": [[1, 2, 3], [-1], [10**9]], "priority": ["background", "urgent"],
            "params": [{"max_new_tokens": 2}, {"temperature": -1}, {"": 1}, {"max_new_tokens": 2, "stop": ["\n"]}],
        }.get(name, []))
    return request


def fuzz(socket_path: Path, count: int, seed: int) -> dict:
    """Requests sent in batches of up to 5 per connection; those with no answer in 30 s count."""
    rng, tried, unanswered = random.Random(seed), 0, 0
    while tried < count:
        batch = [random_request(rng) for _ in range(min(5, count - tried))]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(socket_path))
            for request_id, request in enumerate(batch, 1):
                s.sendall(encode({**request, "id": request_id}))
            waiting, decoder = set(range(1, len(batch) + 1)), FrameDecoder()
            try:
                while waiting:
                    data = s.recv(1 << 16)
                    if not data:
                        break
                    waiting -= {f.get("id") for f in decoder.feed(data) if f.get("type") in ("result", "error")}
            except socket.timeout:
                pass
        tried, unanswered = tried + len(batch), unanswered + len(waiting)
    return {"tried": tried, "unanswered": unanswered}


def kill_storm(socket_path: Path, client: DaemonClient, pid: int, storms: int, per_storm: int) -> dict:
    idle = lambda: (lambda s: s["running"] == 0 and s["queue_depth"] == 0)(client.stats())  # noqa: E731
    before = probes.rss_bytes(pid)
    probes.kill_storm(socket_path, per_storm)  # the first storm: what the daemon keeps once it has seen one
    probes.settle(idle, timeout=120)
    settled = probes.rss_bytes(pid)
    killed = per_storm
    for _ in range(storms - 1):
        killed += probes.kill_storm(socket_path, per_storm)
    freed = probes.settle(idle, timeout=120)
    return {"tried": killed, "unanswered": 0 if freed else 1, "rss_before_mb": before / MB,
            "rss_settled_mb": settled / MB, "rss_after_mb": probes.rss_bytes(pid) / MB}


def typing_latencies(client: DaemonClient, count: int) -> list[float]:
    ids = client.tokenizer.encode("def add(a, b):\n    return ")
    times = []
    for i in range(count):
        started = time.perf_counter()
        client.generate_for("typing", ids + ids[-1:] * (i % 3), TYPING)
        times.append(time.perf_counter() - started)
    return times


def unread_answers(socket_path: Path, client: DaemonClient, pid: int, hellos: int) -> dict:
    before = probes.rss_bytes(pid)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(socket_path))
        for request_id in range(1, hellos + 1):
            s.sendall(encode({"id": request_id, "op": "hello"}))
        time.sleep(2.0)
        latencies = typing_latencies(client, 5)
        during = probes.rss_bytes(pid)
    return {"tried": hellos, "rss_before_mb": before / MB, "rss_after_mb": during / MB,
            "other_p50_ms": 1000 * statistics.median(latencies)}


def huge_prompt(base_url: str, client: DaemonClient, megabytes: int, count: int) -> dict:
    baseline = typing_latencies(client, count)
    answer: dict = {}

    def post() -> None:
        started = time.perf_counter()
        try:
            r = httpx.post(f"{base_url}/v1/completions", timeout=300,
                           json={"model": "default", "prompt": "x " * (megabytes * MB // 2), "max_tokens": 1})
            answer["status"] = r.status_code
        except httpx.HTTPError as exc:
            answer["status"] = type(exc).__name__
        answer["s"] = time.perf_counter() - started

    sender = threading.Thread(target=post)
    sender.start()
    time.sleep(0.2)
    during = typing_latencies(client, count)
    sender.join()
    return {"tried": 1, "status": answer.get("status"), "huge_answer_s": answer.get("s"),
            "baseline_p50_ms": 1000 * statistics.median(baseline), "other_p50_ms": 1000 * statistics.median(during),
            "other_max_ms": 1000 * max(during)}


def daemon_kill(directory: Path, args: argparse.Namespace) -> dict:
    socket_path = directory / "auto.sock"
    extra = ("--threads", str(args.threads), *(["--model", args.model] if args.model else []))
    client = DaemonClient(socket_path, client_name="survivor", autostart=AutoStart(extra, idle_timeout_s=30))
    ids = client.tokenizer.encode("def story():\n")
    streaming = threading.Event()
    worker = threading.Thread(target=lambda: _ignore(lambda: client.generate_for(
        "doc", ids, SamplingParams(max_new_tokens=4096, ignore_eos=True), on_token=lambda t, s: streaming.set())))
    worker.start()
    streaming.wait(120)
    client.started_engine.send_signal(signal.SIGKILL)
    killed = time.perf_counter()
    worker.join(30)
    client.generate_for("doc", ids, TYPING)  # reconnects: a new daemon, its model loaded
    recovery = time.perf_counter() - killed
    client.shutdown()
    client.started_engine.wait(30)
    return {"tried": 1, "unanswered": 0, "recovery_s": recovery}


def _ignore(call) -> None:
    try:
        call()
    except LoopcoderError:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="default: the embedded SmolLM2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fuzz", type=int, default=400, help="fuzzed requests")
    p.add_argument("--storms", type=int, default=4, help="kill storms, the first one settling the RSS")
    p.add_argument("--per-storm", type=int, default=25, help="clients killed per storm")
    p.add_argument("--hellos", type=int, default=300, help="unread `hello`s")
    p.add_argument("--huge-mb", type=int, default=16, help="the huge HTTP prompt, in MiB")
    p.add_argument("--typing", type=int, default=10, help="small requests timed per latency figure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path)
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="loopcoder-faults-") as tmp:
        socket_path, port = Path(tmp) / "engine.sock", free_port()
        process = start_engine(socket_path, port, args)
        try:
            client = DaemonClient(socket_path, client_name="typist")
            results = {
                "fuzz": fuzz(socket_path, args.fuzz, args.seed),
                "kill storm": kill_storm(socket_path, client, process.pid, args.storms, args.per_storm),
                "unread answers": unread_answers(socket_path, client, process.pid, args.hellos),
                "huge prompt": huge_prompt(f"http://127.0.0.1:{port}", client, args.huge_mb, args.typing),
            }
            alive = process.poll() is None and _answers(socket_path)
        finally:
            process.terminate()
            process.wait(30)
        results["daemon kill"] = daemon_kill(Path(tmp), args)

    headers = ["probe", "tried", "unanswered", "RSS before MB", "RSS after MB", "figure"]
    figures = {
        "fuzz": lambda r: "",
        "kill storm": lambda r: f"settled at {fmt(r['rss_settled_mb'])} MB; after/settled {r['rss_after_mb'] / r['rss_settled_mb']:.3f}",
        "unread answers": lambda r: f"another client's p50 {fmt(r['other_p50_ms'])} ms meanwhile",
        "huge prompt": lambda r: (f"HTTP {r['status']} in {fmt(r['huge_answer_s'], 2)} s; typing p50 {fmt(r['other_p50_ms'])} ms "
                                  f"(max {fmt(r['other_max_ms'])}) vs {fmt(r['baseline_p50_ms'])} ms alone"),
        "daemon kill": lambda r: f"answered again after {fmt(r['recovery_s'], 1)} s (new daemon, model load included)",
    }
    rows = [[name, str(r["tried"]), str(r.get("unanswered", "")), fmt(r["rss_before_mb"]) if "rss_before_mb" in r else "",
             fmt(r["rss_after_mb"]) if "rss_after_mb" in r else "", figures[name](r)] for name, r in results.items()]
    print(markdown_table(headers, rows))
    print(f"\ndaemon alive after every probe: {alive}")
    if args.json:
        write_json(args.json, {"machine": machine_info(), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "alive": alive, "results": results})
    if args.plot:
        plot(results, args.plot)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    huge = results["huge prompt"]
    left.bar(["alone", "during a huge prompt"], [huge["baseline_p50_ms"], huge["other_p50_ms"]], color=["#888", "#c44"])
    left.set_ylabel("a typing client's request, p50 ms")
    left.set_title("one huge HTTP prompt vs everyone else")
    names = ["kill storm", "unread answers"]
    before = [results[n]["rss_before_mb"] for n in names]
    after = [results[n]["rss_after_mb"] for n in names]
    x = range(len(names))
    right.bar([i - 0.2 for i in x], before, 0.4, label="before")
    right.bar([i + 0.2 for i in x], after, 0.4, label="after")
    right.set_xticks(list(x), names)
    right.set_ylabel("daemon RSS, MB")
    right.set_title("memory under faults")
    right.legend()
    fig.tight_layout()
    save_figure(fig, [path])


if __name__ == "__main__":
    main()
