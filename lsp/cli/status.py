"""`loopcoder status` (and `loopcoder engine status`): the running engine's model, device,
memory, documents, clients and latency."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loopcoder.engine.errors import EngineUnavailableError
from loopcoder.engine.serving.client import DaemonClient

from .common import human, print_rows
from .loading import socket_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", type=Path, default=None, help="the engine's socket or endpoint file (as for `loopcoder engine`)")


def run(args: argparse.Namespace) -> int:
    path = socket_path(args)
    try:
        stats = DaemonClient(path, client_name="loopcoder status").stats()
    except EngineUnavailableError as e:
        print(f"loopcoder: {e}", file=sys.stderr)
        return 1
    kv_used = (stats["blocks_total"] - stats["blocks_free"]) * stats["block_size"] * stats["kv_bytes_per_token"]
    print_rows([
        ("model", stats["model"] or "(default)"),
        ("device", f"{stats['device']} ({stats['dtype'].removeprefix('torch.')})"),
        ("memory (KV cache)", f"{human(kv_used)} of {human(stats['kv_bytes'])} in use; "
                              f"{stats['blocks_cached']} blocks cached for reuse"),
        ("warm documents", str(stats["sessions"])),
        ("connected clients", f"{len(stats['clients']) - 1}"
                              + (f": {', '.join(c for c in stats['clients'] if not c.startswith('loopcoder status'))}"
                                 if len(stats["clients"]) > 1 else "")),
        ("recent latency (p50)", f"first token {_ms(stats['first_token_p50_s'])}, whole request "
                                 f"{_ms(stats['total_p50_s'])} over {stats['requests']} requests"),
        ("queue", f"{stats['running']} running, {stats['queue_depth']} waiting"),
        ("tensor parallel", _tensor_parallel_row(stats)),
        *_graph_rows(stats),
        ("process", f"pid {stats['pid']}, up {stats['uptime_s']:.0f} s, socket {path}"),
    ])
    return 0


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _tensor_parallel_row(stats: dict) -> str:
    world_size = stats.get("tensor_parallel", 1)
    if world_size == 1:
        return "off (1 process)"
    pids = ", ".join(map(str, stats.get("tensor_parallel_pids", [])))
    return f"{world_size} ranks: rank 0 here, followers pid {pids}; KV cache figures are rank 0's share"


def _graph_rows(stats: dict) -> list[tuple[str, str]]:
    """The CUDA graph row of `loopcoder status`, on GPU engines only."""
    if not str(stats.get("device", "")).startswith("cuda"):
        return []
    sizes = stats.get("cuda_graphs")
    if sizes is None:
        return [("CUDA graphs", "off: every step runs eagerly (docs/troubleshooting.md, Speed)")]
    captured = ", ".join(map(str, sizes)) or "none yet"
    extend = ", ".join(map(str, stats.get("cuda_graphs_extend") or [])) or "none yet"
    return [("CUDA graphs", f"decode batches {captured}; prefills of {extend} rows; "
                            f"{stats.get('graph_replays', 0)} steps replayed")]
