"""The tensor-parallel process group and the three collectives the model needs.

One process per device. The backend is a parameter: "gloo" on CPU (tests), "nccl" on
CUDA. For NCCL on the lent multi-GPU machines, NVLink multicast (NVLS) must stay off:
set `NCCL_NVLS_ENABLE=0` in every rank's environment before the process group starts
(`init_tensor_parallel` sets it when it is unset), together with any other multicast-off
variable the device README asks for.

With world_size 1 no collective runs and no process group is needed, so a single
device runs the sharded code path unchanged.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class TensorParallelGroup:
    rank: int
    world_size: int
    group: Any = None  # a torch.distributed ProcessGroup, None for the default group

    @classmethod
    def single(cls) -> "TensorParallelGroup":
        return cls(rank=0, world_size=1)

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of x over ranks, in place."""
        if self.world_size > 1:
            dist.all_reduce(x, group=self.group)
        return x

    def all_gather_last_dim(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., n) on every rank -> (..., world_size * n), rank order."""
        if self.world_size == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=-1)

    def broadcast_object(self, obj: Any, device: torch.device) -> Any:
        """Rank 0's `obj` on every rank (other ranks pass None)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group, device=device)
        return box[0]

    def close(self) -> None:
        """Leave the process group once every rank is done (a rank that exits without this
        can abort its peers' gloo threads)."""
        if self.world_size > 1 and dist.is_initialized():
            dist.barrier(group=self.group)
            dist.destroy_process_group()


MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def init_tensor_parallel(rank: int, world_size: int, init_method: str, backend: str = "gloo") -> TensorParallelGroup:
    """Join the default process group; `init_method` such as "tcp://127.0.0.1:PORT"."""
    if backend == "nccl":
        # NVLink multicast stays off (NCCL, PyTorch symmetric memory, NVSHMEM): on shared
        # hosts a program using it can take the GPUs out of service.
        for name, value in MULTICAST_OFF.items():
            os.environ.setdefault(name, value)
        torch.cuda.set_device(rank)
    if world_size > 1:
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    return TensorParallelGroup(rank=rank, world_size=world_size)


def free_tcp_port() -> int:
    """A loopback port that was free a moment ago, for init_method."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
