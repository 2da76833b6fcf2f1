"""The CLI's way to the model runtime: a model loaded in this process, or the engine the
backend options name (the daemon, a remote server).

The runtime (torch, the loader, the quantized layers, the daemon that holds an engine) is
imported inside these functions, when it is needed: the subcommands import this module at
their top, and `--help`, or a front end on a remote backend, loads no torch.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopcoder.engine.api import EngineAPI
from loopcoder.engine.errors import InvalidRequestError, LoopcoderError, ModelLoadError
from loopcoder.engine.serving.socket_file import default_socket_path
from loopcoder.lsp.features.engine_loading import engine_for_args

if TYPE_CHECKING:
    import torch

    from loopcoder.engine.engine import Engine


def load_engine(args: argparse.Namespace) -> Engine:
    """The model of the model options (common.add_model_args), loaded in this process."""
    from loopcoder.engine import load_model

    dtype = _dtype_and_threads(args)
    started = time.perf_counter()
    kv_budget = parse_size(getattr(args, "kv_budget", None))
    try:
        engine = load_model(args.model, device=args.device, dtype=dtype, quant=args.quant, progress=sys.stderr.isatty(),
                            kv_budget_bytes=kv_budget)
    except LoopcoderError:
        raise
    except (RuntimeError, AssertionError, ValueError, OSError) as e:  # torch's "no CUDA", a bad device string
        raise ModelLoadError(f"could not load the model on device {args.device!r}: {e}") from e
    logging.getLogger("loopcoder").info("model loaded in %.2f s", time.perf_counter() - started)
    return engine


def engine_for(args: argparse.Namespace) -> EngineAPI:
    """The engine the backend options (engine_loading.add_backend_arguments) name; the model
    loads in this process when no daemon serves it."""
    return engine_for_args(args, lambda: load_engine(args))


def launch_tensor_parallel(args: argparse.Namespace) -> tuple[Engine, Any]:
    """The engine as rank 0 of args.tensor_parallel ranks, and its follower processes."""
    from loopcoder.engine.parallel.launch import launch_engine

    dtype = _dtype_and_threads(args)
    try:
        return launch_engine(args.model, args.tensor_parallel, device=args.device, dtype=dtype, quant=args.quant,
                             kv_budget_bytes=parse_size(args.kv_budget), threads=args.threads or 0,
                             progress=sys.stderr.isatty())
    except LoopcoderError:
        raise
    except (RuntimeError, AssertionError, ValueError, OSError) as e:  # torch's "no CUDA", a bad device string
        raise ModelLoadError(f"could not load the model over {args.tensor_parallel} ranks on device "
                             f"{args.device!r}: {e}") from e


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000, "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
               "g": 1 << 30, "gib": 1 << 30, "gb": 10**9}


def parse_size(text: str | None) -> int | None:
    """'2GiB', '512MiB', '1.5G', '1000000' -> bytes; None -> None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise InvalidRequestError(f"size {text!r} is not understood: use e.g. 512MiB or 2GiB")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def set_threads(threads: int | None) -> None:
    """torch's CPU threads, when asked for (None or 0: torch's choice, and torch is not imported)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def _dtype_and_threads(args: argparse.Namespace) -> torch.dtype | None:
    """Sets --threads; the torch dtype of --dtype (None for auto)."""
    import torch

    set_threads(args.threads)
    return None if args.dtype == "auto" else getattr(torch, args.dtype)


def socket_path(args: argparse.Namespace) -> Path:
    """The engine daemon's socket: --socket, else the default one."""
    return args.socket or default_socket_path()


def weight_summary(model: Any) -> tuple[list[str], int]:
    """A loaded model's quantization kinds (int8, int4, ...; sorted) and its weights' bytes."""
    from loopcoder.engine.quantization import QuantLinear, weight_bytes

    kinds = {_kind(m.weight_q) for m in model.modules() if isinstance(m, QuantLinear)}
    return sorted(kinds), weight_bytes(model)


def _kind(weight: Any) -> str:
    """"int4", "fp8", ..., or "gguf Q4_K" for a GGUF file's own blocks."""
    kind = type(weight).__name__.removesuffix("Weight").lower()
    return f"{kind} {weight.type.name}" if kind == "gguf" else kind


def cpu_kernel_rows(engine: Any) -> list[tuple[str, str]]:
    """`loopcoder info`'s line on what the CPU path runs on (the C kernels, or why not); CPU engines only."""
    if not str(engine.config.device).startswith("cpu"):
        return []
    from loopcoder.kernels.attention.cpu import cpu_attention_status
    from loopcoder.kernels.decoder_cpu import decoder_kernel_status
    from loopcoder.kernels.gguf_linear import cpu_kernel_status

    step = getattr(getattr(engine, "model", None), "cpu_decoder_status", None)  # whether this model's decode steps take it
    decoder = decoder_kernel_status() if step is None else f"CPU decode step: {step}"
    return [("CPU kernels", f"{cpu_kernel_status()}; {cpu_attention_status()}; {decoder}")]
