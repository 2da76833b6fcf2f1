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


STREAMING_CLIENT = """
import sys
from loopcoder.engine.serving.client import DaemonClient
from loopcoder.engine.sampling import SamplingParams
c = DaemonClient(sys.argv[1], client_name="doomed")
text = "def step(state):\\n    return state + 1\\n" * int(sys.argv[2])
c.generate_for("doc", c.tokenizer.encode(text), SamplingParams(max_new_tokens=4096, ignore_eos=True),
               on_token=lambda t, s: print("tok", flush=True))
"""


def kill_storm(socket_path, clients: int, prompt_lines: int = 40) -> int:
    """Start `clients` processes that each open a document and stream a long answer; SIGKILL
    each once it streams (or after 60 s). Returns how many were streaming when killed."""
    import signal
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", STREAMING_CLIENT, str(socket_path), str(prompt_lines)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(clients)]
    streaming = 0
    for proc in procs:
        streaming += proc.stdout.readline().startswith("tok")
        proc.send_signal(signal.SIGKILL)
    for proc in procs:
        proc.wait()
        proc.stdout.close()
    return streaming
