"""`loopcoder demo`: start `loopcoder lsp` and drive it as an editor does (the driver: lsp/demo.py)."""

from __future__ import annotations

import argparse
import asyncio

from loopcoder.lsp import demo as driver

from .common import add_model_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    driver.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    args.server_args = ["--device", args.device, "--dtype", args.dtype, "--quant", args.quant]
    if args.model:
        args.server_args += ["--model", args.model]
    if args.threads:
        args.server_args += ["--threads", str(args.threads)]
    return asyncio.run(driver.run(args))
