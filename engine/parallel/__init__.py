"""Tensor parallelism inside one host: one process per device, Megatron-style sharding.

- `group`: the process group (gloo on CPU, nccl on CUDA) and the collectives used.
- `layers`: row-parallel linear, vocab-parallel embedding and lm_head.
- `sharding`: cut a loaded single-process model into rank r of world_size.
- `runner`: rank 0 drives steps (`TensorParallelRunner`); other ranks `follow()`.
- `loading`: one rank's shard, read straight from the checkpoint (`load_shard`).
- `launch`, `worker`: the engine daemon as rank 0, starting and stopping the other ranks
  (`loopcoder engine --tensor-parallel N`).
"""

from .group import TensorParallelGroup, free_tcp_port, init_tensor_parallel
from .runner import TensorParallelRunner, follow
from .sharding import check_tensor_parallel, random_sharded_model, shard_model, tensor_parallel_config

__all__ = [
    "TensorParallelGroup",
    "TensorParallelRunner",
    "check_tensor_parallel",
    "follow",
    "free_tcp_port",
    "init_tensor_parallel",
    "random_sharded_model",
    "shard_model",
    "tensor_parallel_config",
]
