"""What the fault tests measure a daemon by: its resident memory, and waiting for a condition."""

from __future__ import annotations

import time
from typing import Callable


def rss_bytes(pid: int) -> int:
    """The resident set size of process `pid` (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def settle(condition: Callable[[], bool], timeout: float = 30.0, every: float = 0.1) -> bool:
    """Whether `condition()` comes true within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
