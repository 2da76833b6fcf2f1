"""The Triton kernels under Triton's interpreter on CPU (skipped without triton, or with CUDA).

Triton chooses between compiling and interpreting when triton.language is first
imported, and the rest of the suite has imported it by now: the cases
(triton_interpreter_cases.py, ..._fused_cases.py, and test_gguf_triton.py, which also
runs compiled on a GPU) run in a fresh pytest process with TRITON_INTERPRET=1.
"""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CASES = {"attention-and-fused": ("triton_interpreter_cases.py", "triton_interpreter_fused_cases.py"),
         "gguf": ("test_gguf_triton.py",)}


def version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in importlib.metadata.version(name).split(".")[:2])


@pytest.mark.parametrize("cases", CASES)
def test_kernels_under_the_interpreter(cases):
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("CUDA is present: the GPU tests run the compiled kernels")
    if version("triton") < (3, 9) and version("numpy") >= (2, 4):
        # Older interpreters call int() on 1-element arrays, which numpy 2.4 refuses
        # (triton-lang/triton#9171); 3.9.0 is the first release checked to have the fix.
        pytest.skip("this triton's interpreter fails under numpy >= 2.4: needs triton >= 3.9")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("LOOPCODER_KERNELS", None)
    files = [str(Path(__file__).with_name(name)) for name in CASES[cases]]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=Path(__file__).parents[2], env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
