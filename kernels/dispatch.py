"""Which implementation of a kernel runs: Triton on CUDA, the torch reference elsewhere.

`LOOPCODER_KERNELS` chooses:

    unset   automatic: the Triton kernel where it can run (triton importable, CUDA
            tensors, a supported dtype and shape), the reference otherwise
    torch   always the reference
    triton  always the Triton kernel; where it cannot run, KernelUnavailableError says why

KernelUnavailableError is a RuntimeError of kernels/ (which imports nothing else of
loopcoder); the engine turns it into its own LoopcoderError where its steps run.

Triton is an optional import: CPU installs do not have it. With `TRITON_INTERPRET=1`
a forced Triton kernel also runs on CPU tensors (Triton's interpreter, for tests at
small shapes); the automatic choice never takes the interpreter.
"""

from __future__ import annotations

import functools
import os
from typing import Callable

import torch

MODE_ENV = "LOOPCODER_KERNELS"
MODES = ("torch", "triton")


class KernelUnavailableError(RuntimeError):
    """LOOPCODER_KERNELS forced a kernel that cannot run here, or holds an unknown value."""


def kernel_mode() -> str:
    """'auto', 'torch' or 'triton', read from the environment on every call (tests set it)."""
    value = os.environ.get(MODE_ENV, "").strip().lower()
    if not value:
        return "auto"
    if value not in MODES:
        raise KernelUnavailableError(f"{MODE_ENV}={value!r}: expected 'torch' or 'triton', or unset for automatic")
    return value


@functools.cache
def triton_import_error() -> str | None:
    """None when triton imports, else why not."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_blocker(*tensors: torch.Tensor) -> str | None:
    """Why no Triton kernel can run on these tensors at all (None: it can)."""
    error = triton_import_error()
    if error is not None:
        return f"triton is not importable ({error})"
    devices = {t.device.type for t in tensors}
    if devices != {"cuda"} and not (devices == {"cpu"} and interpreting()):
        return f"its tensors are on {'/'.join(sorted(devices))}; Triton kernels need CUDA tensors (or TRITON_INTERPRET=1)"
    return None


def use_triton(op: str, blocker: Callable[[], str | None]) -> bool:
    """Whether `op` takes its Triton kernel; blocker() says why it could not (None: nothing stops it).

    Forced Triton that cannot run raises; the automatic choice falls back to the reference,
    and never runs the interpreter.
    """
    mode = kernel_mode()
    if mode == "torch":
        return False
    reason = blocker()
    if mode == "triton":
        if reason is not None:
            raise KernelUnavailableError(f"{MODE_ENV}=triton, but the Triton kernel of {op} cannot run: {reason}")
        return True
    return reason is None and not interpreting()
