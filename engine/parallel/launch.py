"""The engine daemon as rank 0 of a tensor-parallel group: it starts ranks 1..N-1 as
child processes (`python -m loopcoder.engine.parallel.worker`), each of which loads only
its shard and runs rank 0's steps in `follow()`.

Startup, every wait bounded and watching the children::

    rank 0 (daemon)                               rank r (worker)
    check the config, devices, quant: refuse
      before any process starts
    TCPStore on a loopback port, RankPlan in it
    spawn ranks 1..N-1  ────────────────────────▶ connect to the store, read the RankPlan
    wait for "joined/r" (RENDEZVOUS_TIMEOUT_S)  ◀─ set "joined/r"
    init_process_group (gloo / nccl)  ◀────────▶  init_process_group
    load shard 0                                  load shard r, plan the same cache layout
    wait for "loaded/r" (LOAD_TIMEOUT_S)  ◀──────  set "loaded/r": "ok" or the error
    Engine(TensorParallelRunner)                  follow()

A child that exits or reports an error fails the start at once with ModelLoadError
naming its rank. While serving, a watch thread polls the children: a rank that dies
stops the daemon (`EngineServer` stops on `on_failure`), which then exits with an error;
if a collective holds it past DEATH_GRACE_S it exits hard. A stopping daemon releases
the followers (`TensorParallelRunner.stop()`) and joins them. Each worker also exits
when its parent does, so no rank outlives the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from ..config import ModelConfig
from ..engine import Engine, EngineConfig
from ..errors import EngineUnavailableError, ModelLoadError
from ..loader import open_source, resolve_precision
from ..quantization import QUANT_MODES, check_quant_device
from .group import TensorParallelGroup, init_tensor_parallel, multicast_off_env, release_process_group
from .loading import load_shard
from .runner import TensorParallelRunner
from .sharding import check_tensor_parallel

log = logging.getLogger(__name__)

RENDEZVOUS_TIMEOUT_S = 120.0  # the workers start Python and import torch
LOAD_TIMEOUT_S = 3600.0  # the slowest rank reads its shard
STOP_TIMEOUT_S = 30.0  # the step in flight ends, the followers leave
DEATH_GRACE_S = 30.0  # after a rank died, the daemon's orderly stop; then it exits hard
_POLL_S = 0.05
STORE_PREFIX = "loopcoder/"  # our keys in the TCPStore, apart from torch's


@dataclass(frozen=True)
class RankPlan:
    """What every rank needs to load its shard and lay out its KV cache; rank 0 sends it
    to the others, so all ranks plan the same cache (CacheLayout.plan) from one config."""

    model_path: str | None  # None: the embedded default
    world_size: int
    backend: str  # "gloo" (CPU) or "nccl" (rank r on cuda:r)
    engine_config: EngineConfig  # rank 0's
    threads: int = 0  # torch CPU threads per rank; 0: torch's choice
    quant: str = "none"  # every rank quantizes its shard's linears as they load

    def device(self, rank: int) -> str:
        return "cpu" if self.backend == "gloo" else f"cuda:{rank}"

    def engine_config_for(self, rank: int) -> EngineConfig:
        return replace(self.engine_config, device=self.device(rank))


def check_launch(config: ModelConfig, world_size: int, device: str, quant: str) -> str:
    """Refuse a tensor-parallel launch that cannot work, before any process starts;
    returns the backend ("gloo" or "nccl")."""
    check_tensor_parallel(config, world_size)
    try:
        kind = torch.device(device)
    except RuntimeError as e:
        raise ModelLoadError(f"bad --device {device!r}: {e}") from None
    if quant not in ("auto", *QUANT_MODES):
        raise ModelLoadError(f"--quant {quant!r} is not one of auto, {', '.join(QUANT_MODES)}")
    if quant == "gguf":
        raise ModelLoadError("--quant gguf computes a GGUF file's blocks in one process (on the CPU or one GPU); "
                             "with --tensor-parallel use none, int8, int4 or fp8")
    if kind.type == "cpu":
        return "gloo"
    if kind.type != "cuda":
        raise ModelLoadError(f"--tensor-parallel runs on --device cpu or cuda, not {device!r}")
    if kind.index is not None:
        raise ModelLoadError(f"--tensor-parallel {world_size} puts rank r on cuda:r: pass --device cuda, not "
                             f"{device!r} (choose the GPUs with CUDA_VISIBLE_DEVICES)")
    visible = torch.cuda.device_count()
    if visible < world_size:
        raise ModelLoadError(f"--tensor-parallel {world_size} needs {world_size} GPUs, one per rank, but {visible} "
                             f"{'is' if visible == 1 else 'are'} visible (CUDA_VISIBLE_DEVICES="
                             f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    if quant == "fp8":
        check_quant_device(quant, kind)  # every rank's card alike: refuse before any starts
    return "nccl"


def launch_engine(model_path: str | Path | None, world_size: int, *, device: str = "cpu",
                  dtype: torch.dtype | None = None, quant: str = "none", kv_budget_bytes: int | None = None,
                  block_size: int = 16, threads: int = 0, progress: bool = False) -> tuple[Engine, "FollowerRanks"]:
    """This process as rank 0 of `world_size` ranks serving the model at `model_path`:
    its Engine (scheduler, sessions, KV of its shard) and the running followers.

    `kv_budget_bytes` is per rank: each holds its share of the KV heads, so the cache
    holds about world_size times the tokens of one process with the same budget."""
    source = open_source(model_path)  # config and tokenizer; no weights read yet
    backend = check_launch(source.config, world_size, device, quant)
    quant = "none" if quant == "auto" else quant  # auto picks int4 for a CPU GGUF; with ranks: say which
    quant, dtype, reason = resolve_precision(quant, dtype, torch.device(device), False)
    engine_config = EngineConfig(device=device, dtype=dtype, block_size=block_size, precision=reason)
    if kv_budget_bytes is not None:
        engine_config = replace(engine_config, kv_budget_bytes=kv_budget_bytes)
    path = None if model_path is None else str(Path(model_path).resolve())
    plan = RankPlan(path, world_size, backend, engine_config, threads, quant)
    ranks = FollowerRanks.start(plan)
    try:
        model = load_shard(source, ranks.tp, dtype, plan.device(0), progress, quant)
        ranks.wait_loaded()
        engine = Engine(model, source.tokenizer, plan.engine_config_for(0), runner_class=TensorParallelRunner)
    except BaseException:
        ranks.terminate()
        raise
    return engine, ranks


class FollowerRanks:
    """Ranks 1..N-1 as child processes of rank 0, and rank 0's side of their lifecycle."""

    def __init__(self, plan: RankPlan, server: dist.TCPStore) -> None:
        self.plan = plan
        self.server = server  # lives as long as the group: every rank's store client talks to it
        self.store = dist.PrefixStore(STORE_PREFIX, server)
        self.processes: list[subprocess.Popen] = []  # processes[i] is rank i + 1
        self.tp: TensorParallelGroup | None = None
        self.failed: str | None = None  # why the group broke while serving
        self._stopping = False

    @classmethod
    def start(cls, plan: RankPlan) -> "FollowerRanks":
        """Spawn the followers and join the process group with them (rank 0)."""
        timeout = timedelta(seconds=RENDEZVOUS_TIMEOUT_S)
        server = dist.TCPStore("127.0.0.1", 0, plan.world_size, is_master=True, timeout=timeout,
                               wait_for_workers=False)
        ranks = cls(plan, server)
        ranks.store.set("plan", pickle.dumps(plan))
        env = multicast_off_env(os.environ)  # NCCL reads it at its start, in each child
        try:
            for rank in range(1, plan.world_size):
                command = [sys.executable, "-m", "loopcoder.engine.parallel.worker", "--store",
                           f"127.0.0.1:{server.port}", "--rank", str(rank), "--parent", str(os.getpid())]
                ranks.processes.append(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL))
            ranks._wait("joined", "start", RENDEZVOUS_TIMEOUT_S)
            ranks.tp = init_tensor_parallel(0, plan.world_size, backend=plan.backend, store=server)
        except BaseException:
            ranks.terminate()
            raise
        return ranks

    def wait_loaded(self) -> None:
        """Until every follower has its shard and cache; raises ModelLoadError naming a rank that failed."""
        self._wait("loaded", "load its shard", LOAD_TIMEOUT_S)

    def _wait(self, stage: str, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = set(range(1, self.plan.world_size))
        while pending:
            dead = self.failure()
            for rank in sorted(pending):
                key = f"{stage}/{rank}"
                if self.store.check([key]):
                    answer = self.store.get(key).decode()
                    if answer != "ok":
                        raise ModelLoadError(f"tensor-parallel rank {rank} could not {what}: {answer}")
                    pending.discard(rank)
            if pending and dead is not None:  # checked after the keys: a rank that reported, then exited
                raise ModelLoadError(f"{dead} before it could {what} (its output is above)")
            if pending and time.monotonic() > deadline:
                raise ModelLoadError(f"tensor-parallel rank(s) {sorted(pending)} did not {what} within {timeout_s:.0f} s")
            if pending:
                time.sleep(_POLL_S)

    def failure(self) -> str | None:
        """Which follower has exited, if one has."""
        for rank, process in enumerate(self.processes, start=1):
            code = process.poll()
            if code is not None:
                return f"tensor-parallel rank {rank} (pid {process.pid}) exited with status {code}"
        return None

    def watch(self, on_failure: Callable[[str], None]) -> None:
        """Poll the followers from a thread; the first that exits while serving calls
        `on_failure(reason)` (the daemon stops), and past DEATH_GRACE_S this process exits."""

        def poll() -> None:
            while not self._stopping:
                reason = self.failure()
                if reason is not None and not self._stopping:
                    self.failed = f"{reason} while serving"
                    log.error("%s: the engine stops", self.failed)
                    with contextlib.suppress(RuntimeError):  # the daemon's loop already closed: it stops anyway
                        on_failure(self.failed)
                    time.sleep(DEATH_GRACE_S)
                    log.error("the engine did not stop within %.0f s after a rank died: exiting now", DEATH_GRACE_S)
                    self.terminate()
                    os._exit(1)
                time.sleep(0.2)

        threading.Thread(target=poll, name="loopcoder-tensor-parallel-watch", daemon=True).start()

    def stop(self, runner: TensorParallelRunner | None) -> None:
        """Release the followers from follow(), leave the group and wait for them to exit;
        raises EngineUnavailableError when one had died while serving."""
        self._stopping = True
        failure = self.failed or self.failure()
        if failure is None and runner is not None and runner.stop(STOP_TIMEOUT_S):
            try:
                self.tp.close()
            except Exception as exc:  # a follower left early: nothing more to wait for
                log.warning("leaving the tensor-parallel group: %s", exc)
            self._join(STOP_TIMEOUT_S)
        self.terminate()
        if failure is not None:
            raise EngineUnavailableError(f"{failure}; the engine stopped")

    def terminate(self) -> None:
        """End every follower still running (SIGTERM, then SIGKILL) and wait for it."""
        self._stopping = True
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        self._join(5.0)
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        with contextlib.suppress(Exception):
            release_process_group()

    def _join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict:
        return {"tensor_parallel": self.plan.world_size, "tensor_parallel_pids": [p.pid for p in self.processes]}
