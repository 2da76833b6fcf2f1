"""What the kernels ask of the GPU they run on, to size their grids."""

from __future__ import annotations

import functools

import torch


@functools.cache
def multiprocessors(device: torch.device) -> int:
    """The streaming multiprocessors of a CUDA device: split-K decode and prefill, and the FP8
    GEMV's K splits, aim at a few programs per multiprocessor."""
    return torch.cuda.get_device_properties(device).multi_processor_count
