"""The tensor-parallel process group and the three collectives the model needs.

One process per device. The backend is a parameter: "gloo" on CPU (tests), "nccl" on
CUDA. For NCCL on the lent multi-GPU machines, NVLink multicast (NVLS) must stay off:
set `NCCL_NVLS_ENABLE=0` in every rank's environment before the process group starts
(`init_tensor_parallel` sets it when it is unset), together with any other multicast-off
variable the device README asks for.

Rank 0 sends each step's metadata to the others over a second, CPU (gloo) group,
`control`, whose timeout is long: a follower rank waits there while the engine is idle,
for hours, where NCCL's watchdog (and gloo's default timeout) would abort it. The
default group, which carries the tensors, keeps a timeout that bounds a stuck collective.

With world_size 1 no collective runs and no process group is needed, so a single
device runs the sharded code path unchanged.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping

import torch
import torch.distributed as dist


@dataclass
class TensorParallelGroup:
    rank: int
    world_size: int
    group: Any = None  # a torch.distributed ProcessGroup, None for the default group
    control: Any = None  # the gloo group of broadcast_object; None: `group` on `device`

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
        if self.control is not None:
            dist.broadcast_object_list(box, src=0, group=self.control, device=torch.device("cpu"))
        else:
            dist.broadcast_object_list(box, src=0, group=self.group, device=device)
        return box[0]

    def close(self) -> None:
        """Leave the process group once every rank is done (a rank that exits without this
        can abort its peers' gloo threads)."""
        if self.world_size > 1 and dist.is_initialized():
            # The barrier on the CPU control group: an NCCL barrier guesses each rank's
            # device and, measured on 2 GPUs, held the daemon's shutdown past 30 s.
            dist.barrier(group=self.control if self.control is not None else self.group)
            release_process_group()


def release_process_group() -> None:
    """Destroy the default process group, unless it is NCCL's: there destroy_process_group
    blocked both ranks of a daemon's shutdown on 2 H200s (torch 2.11), and the processes
    exit right after, which frees the communicators."""
    if dist.is_initialized() and dist.get_backend() != "nccl":
        dist.destroy_process_group()


MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
COLLECTIVE_TIMEOUT = timedelta(minutes=10)  # a step's collectives: every rank is in them together
CONTROL_TIMEOUT = timedelta(days=365)  # a follower waits for the next step as long as the engine idles


def multicast_off_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with NVLink multicast off (NCCL, PyTorch symmetric memory, NVSHMEM) where it
    does not say otherwise: on shared hosts a program using it can take the GPUs out of
    service. For a rank's environment, before its process group starts."""
    return {**MULTICAST_OFF, **env}


def init_tensor_parallel(rank: int, world_size: int, init_method: str | None = None, backend: str = "gloo", *,
                         store: Any = None, timeout: timedelta = COLLECTIVE_TIMEOUT) -> TensorParallelGroup:
    """Join the default process group, by `init_method` ("tcp://127.0.0.1:PORT") or an
    existing `store` (a TCPStore every rank reaches), plus the gloo `control` group."""
    if backend == "nccl":
        os.environ.update(multicast_off_env(os.environ))
        torch.cuda.set_device(rank)
    if world_size == 1:
        return TensorParallelGroup(rank=0, world_size=1)
    dist.init_process_group(backend, init_method=init_method, store=store, rank=rank, world_size=world_size,
                            timeout=timeout)
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return TensorParallelGroup(rank=rank, world_size=world_size, control=control)


def free_tcp_port() -> int:
    """A loopback port that was free a moment ago, for init_method."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
