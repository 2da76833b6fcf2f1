"""What machine and build this is, for reports, handshakes and benchmark notes, and which
device a model runs on where the user leaves it to loopcoder (`--device auto`). No torch: the
callers pass what torch reports, so the choice is tested on any machine."""

from __future__ import annotations

import os
import platform
import sys

from .errors import ModelLoadError


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


# -- the device a model runs on -------------------------------------------------------------

MPS_FALLBACK_ENV = "PYTORCH_ENABLE_MPS_FALLBACK"  # torch reads it once, when it is imported


def pick_device(requested: str, *, cuda: bool, mps: bool) -> str:
    """The torch device `requested` names, given what this torch can use (`cuda`, `mps`:
    torch.cuda.is_available(), torch.backends.mps.is_available()). "auto" is cuda where torch
    sees an NVIDIA GPU, else mps (Apple silicon's GPU), else cpu; mps where torch cannot use
    it is refused, saying why; anything else is torch's to check."""
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested.split(":")[0] == "mps" and not mps:
        raise ModelLoadError(f"--device {requested}: this torch cannot use Apple's GPU (MPS needs a Mac with "
                             "Apple silicon or an AMD GPU, macOS 12.3 or later and a torch built with MPS); "
                             "use --device cpu")
    return requested


def allow_mps_fallback(requested: str) -> bool:
    """Before torch is imported, for a device that may be mps ("mps", or "auto" on macOS): let
    the ops PyTorch has no MPS kernel for run on the CPU instead of failing, each named once in
    a warning from torch (PYTORCH_ENABLE_MPS_FALLBACK=1). A value the user set is kept (0 makes
    such ops raise). Returns whether the fallback is on."""
    if not (requested.split(":")[0] == "mps" or (requested == "auto" and sys.platform == "darwin")):
        return False
    os.environ.setdefault(MPS_FALLBACK_ENV, "1")
    return os.environ[MPS_FALLBACK_ENV].strip() not in ("", "0")


def mps_note() -> str:
    """What a model placed on mps is told: which ops leave the GPU, and that this path is untested."""
    if os.environ.get(MPS_FALLBACK_ENV, "").strip() not in ("", "0"):
        fallback = (f"ops PyTorch has no MPS kernel for run on the CPU, each named once in a warning from torch "
                    f"({MPS_FALLBACK_ENV}=1; set it to 0 to make them fail instead)")
    else:
        fallback = (f"an op PyTorch has no MPS kernel for fails with NotImplementedError ({MPS_FALLBACK_ENV} was "
                    "not 1 when torch was imported; `loopcoder` sets it for --device mps or auto)")
    return f"running on mps, Apple's GPU, which loopcoder's CI does not run: {fallback}"
