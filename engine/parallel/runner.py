"""Every rank runs each forward step in lockstep; rank 0 owns the scheduler.

Rank 0 wraps the model in a `TensorParallelRunner`, which has ModelRunner's interface:
each `step(batch, kv)` first broadcasts the step (the StepInput list) to the other
ranks, then runs its own shard. The other ranks sit in `follow()`, run the same step on
their shard and their own KV cache (same block tables, only their KV heads), and return
when rank 0 sends the stop message (`TensorParallelRunner.stop()`).

Every rank ends a step with the full logits (the lm_head all-gathers them); only rank
0's are used.
"""

from __future__ import annotations

import logging
import threading

import torch

from ..errors import EngineUnavailableError
from ..kv_cache import KVCache
from ..model_runner import ModelRunner, StepInput
from ..models.llama import LlamaForCausalLM
from .group import TensorParallelGroup

log = logging.getLogger(__name__)

_STEP, _FULL, _STOP = "step", "full", "stop"


class TensorParallelRunner(ModelRunner):
    """Rank 0's runner of a sharded model (see sharding.shard_model)."""

    def __init__(self, model: LlamaForCausalLM, device: torch.device | str) -> None:
        super().__init__(model, device)
        self.tp: TensorParallelGroup = model.tp
        if self.tp.rank != 0:
            raise ValueError(f"TensorParallelRunner runs on rank 0; rank {self.tp.rank} calls follow()")
        self._lock = threading.Lock()  # a step, or the stop message, at a time: collectives never interleave
        self.stopped = False

    def step(self, batch: list[StepInput], kv: KVCache, all_logits: bool = False) -> torch.Tensor:
        with self._lock:
            self._check_running()
            self.tp.broadcast_object((_STEP, batch, all_logits), self.device)
            return super().step(batch, kv, all_logits)

    def full_logits(self, token_ids: list[int], dtype: torch.dtype) -> torch.Tensor:
        # Every rank needs the scratch cache: send the whole request, not its one step.
        with self._lock:
            self._check_running()
            self.tp.broadcast_object((_FULL, token_ids, dtype), self.device)
            return _local_full_logits(self, token_ids, dtype)

    def stop(self, timeout_s: float = -1) -> bool:
        """Release the followers from `follow()`, once the step in flight is done; later
        steps raise EngineUnavailableError. False when a step held on past `timeout_s`."""
        if not self._lock.acquire(timeout=timeout_s):
            return False
        try:
            if not self.stopped:
                self.stopped = True
                self.tp.broadcast_object((_STOP,), self.device)
            return True
        finally:
            self._lock.release()

    def _check_running(self) -> None:
        if self.stopped:
            raise EngineUnavailableError("the tensor-parallel ranks have stopped: the engine is shutting down")


def _local_full_logits(runner: ModelRunner, token_ids: list[int], dtype: torch.dtype) -> torch.Tensor:
    scratch = KVCache(runner.model.config, num_blocks=1, block_size=len(token_ids), dtype=dtype, device=runner.device)
    return ModelRunner.step(runner, [StepInput([0], 0, token_ids)], scratch, all_logits=True)


def follow(model: LlamaForCausalLM, kv: KVCache, device: torch.device | str, runner: ModelRunner | None = None) -> int:
    """Run rank 0's steps on this rank's shard until it stops; returns the steps run.

    `runner` (default: a plain one) may replay CUDA graphs: give it the layout rank 0's
    engine has (`CacheLayout.runner`), so that both capture the same steps, collectives
    included."""
    tp: TensorParallelGroup = model.tp
    if tp.rank == 0:
        raise ValueError("rank 0 drives the steps with TensorParallelRunner; only ranks > 0 follow()")
    runner = runner or ModelRunner(model, device)
    steps = 0
    while True:
        message = tp.broadcast_object(None, runner.device)
        if message[0] == _STOP:
            return steps
        try:
            if message[0] == _STEP:
                _, batch, all_logits = message
                runner.step(batch, kv, all_logits)
            else:
                _, token_ids, dtype = message
                _local_full_logits(runner, token_ids, dtype)
        except ValueError as exc:
            # A malformed step fails in metadata, before any collective, on every rank
            # alike: rank 0 reports it to its caller, the followers wait for the next step.
            log.warning("rank %d: step refused: %s", tp.rank, exc)
        steps += 1
