"""What machine and build this is, for reports, handshakes and benchmark notes."""

from __future__ import annotations

import platform


def package_version() -> str:
    """loopcoder's installed version ("0+unknown" when run from a tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loopcoder")
    except PackageNotFoundError:
        return "0+unknown"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or what platform knows elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
