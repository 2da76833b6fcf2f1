"""What the subcommands share: the model and sampling options, reading an input file, and the
lines they print.

It imports nothing of the engine but its errors, so that parsing `loopcoder engine`'s options
stays light."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from loopcoder.engine.errors import InvalidRequestError

if TYPE_CHECKING:  # for the type alone
    from loopcoder.engine.api import GenerationResult

DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTS = ("auto", "none", "int8", "int4", "fp8", "gguf")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="Hugging Face model directory or .gguf file (default: embedded SmolLM2-135M)")
    p.add_argument("--device", default="cpu",
                   help="torch device: cpu, cuda, cuda:1, mps (Apple silicon), or auto: cuda, else mps, else cpu "
                        "(default: cpu)")
    p.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="activation and KV dtype (default auto: bfloat16 when quantized or on a GPU, but float32 beside GGUF blocks on a CPU without bfloat16; else float32)")
    p.add_argument("--quant", default="auto", choices=QUANTS,
                   help="weight quantization (default auto: on the CPU, a GGUF file's own blocks where the C kernel is built; else int4 for a 4-5 bit GGUF on a bf16-capable CPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")


def add_sampling_args(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("--max-tokens", type=int, default=max_tokens, help=f"tokens to generate (default: {max_tokens})")
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)


def human(n: float) -> str:
    """Bytes for people: 1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def print_rows(rows: list[tuple[str, str]]) -> None:
    """A two-column table, the keys padded to one width."""
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def report(result: GenerationResult) -> None:
    """A generation's tokens and timings, one line on stderr."""
    u, t = result.usage, result.timings
    print(
        f"[{u.prompt_tokens} prompt tokens ({u.cached_tokens} cached), {u.generated_tokens} generated, "
        f"first token {t.first_token_s * 1000:.0f} ms, total {t.total_s * 1000:.0f} ms, {result.finish_reason}]",
        file=sys.stderr,
    )


def read_input(name: str, what: str) -> str:
    """The text of file `name` ("-": stdin), or InvalidRequestError naming `what` it should be."""
    if name == "-":
        return sys.stdin.read()
    path = Path(name)
    if not path.is_file():
        raise InvalidRequestError(f"{what} {name} does not exist" if not path.exists() else f"{what} {name} is not a file")
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidRequestError(f"cannot read {what} {name}: {e}") from None
