"""The C extensions behind the CPU kernels (kernels/gguf_cpu.c, kernels/attention/decode_cpu.c):
loaded if `pip install` built them, else the torch reference runs and the reason is kept.

Each extension picks the best instruction set this CPU has (portable C, AVX2, AVX-512)
when it loads; LOOPCODER_CPU_ISA=scalar|avx2|avx512 asks for a lower one (benchmarks of
another machine's path, tests). LOOPCODER_CPU_KERNELS=0 turns every extension off.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

ISA_ENV = "LOOPCODER_CPU_ISA"
OFF_ENV = "LOOPCODER_CPU_KERNELS"


def load_extension(module: str, abi: int) -> tuple[ModuleType | None, str]:
    """(the module, "") or (None, why it is not used) for `module` (a dotted name)."""
    if os.environ.get(OFF_ENV, "").strip() == "0":
        return None, f"turned off by {OFF_ENV}=0"
    try:
        ext = importlib.import_module(module)
    except ImportError as e:
        return None, f"not built ({e}); `pip install` with a C compiler builds it"
    if getattr(ext, "ABI_VERSION", None) != abi:
        return None, (f"built from older C sources (ABI {getattr(ext, 'ABI_VERSION', '?')}, this code needs {abi}); "
                      "reinstall to rebuild it")
    forced = os.environ.get(ISA_ENV, "").strip()
    if forced:
        try:
            ext.set_isa(forced)
        except ValueError as e:
            raise ValueError(f"{ISA_ENV}={forced}: {e}") from None
    return ext, ""


class CpuExtension:
    """One C extension as its Python file uses it: the module (None where it is not used),
    a status line naming its instruction set or why it is off, and its instruction set."""

    def __init__(self, module: str, abi: int, label: str) -> None:
        self.module, self.missing = load_extension(module, abi)
        self.label = label

    def status(self) -> str:
        return f"{self.label}: {self.module.isa()}" if self.module is not None else f"{self.label}: none, {self.missing}"

    def isas(self) -> tuple[str, ...]:
        """The instruction sets this CPU runs the extension with, slowest first (none when it is off)."""
        return () if self.module is None else self.module.supported_isas()

    def set_isa(self, name: str) -> str:
        """Use this instruction set ("scalar", "avx2", "avx512"): benchmarks, tests."""
        if self.module is None:
            raise RuntimeError(self.status())
        return self.module.set_isa(name)
