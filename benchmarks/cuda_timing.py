"""Device time on CUDA, shared by the GPU benchmarks: calls captured in a CUDA graph and
replayed (device time only), back-to-back eager calls (host work included), and the
device-to-device copy bandwidth that rooflines are drawn against.

Imported as `cuda_timing` by scripts run from this directory (`python benchmarks/X.py`
puts the script's folder first on sys.path).
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch


def graph_us(calls: list[Callable[[], object]], replays: int = 20) -> float:
    """Device time per call: the calls captured once in a CUDA graph, the graph replayed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile and warm up off the capture
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(1000 * start.elapsed_time(end) / len(calls))
    return statistics.median(times)


def eager_us(calls: list[Callable[[], object]], reps: int = 10, warmup: int = 1) -> float:
    """Time per call of back-to-back eager calls, host work included (after `warmup` passes)."""
    for _ in range(warmup):
        for call in calls:
            call()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for call in calls:
            call()
        end.record()
        end.synchronize()
        times.append(1000 * start.elapsed_time(end) / len(calls))
    return statistics.median(times)


def copy_bandwidth() -> float:
    """Device-to-device copy of 1 GiB, bytes read + written per second (eager: a copy captured in
    a graph became a copy-engine node and ran at two thirds of this speed on an H200)."""
    a = torch.randint(0, 255, (1 << 30,), dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    return 2 * a.numel() / (eager_us([lambda: b.copy_(a)] * 4) * 1e-6)
