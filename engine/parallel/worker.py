"""A follower rank of the engine daemon: `python -m loopcoder.engine.parallel.worker
--store HOST:PORT --rank R --parent PID` (launch.py starts it; not for users).

It reads the RankPlan from rank 0's store, joins the process group, loads only its
shard, lays out the same KV cache as rank 0 and runs rank 0's steps in follow() until
rank 0 stops it. A load failure is reported to rank 0 through the store (which then
fails the daemon's start with that message). The process exits when its parent does.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import pickle
import signal
import sys
import threading
import time
from datetime import timedelta

import torch.distributed as dist

log = logging.getLogger("loopcoder.engine.parallel.worker")

PARENT_POLL_S = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loopcoder.engine.parallel.worker")
    parser.add_argument("--store", required=True, help="rank 0's TCPStore, HOST:PORT")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True, help="rank 0's pid: exit when it is gone")
    args = parser.parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to stderr
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s rank {args.rank} %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the daemon's terminal: rank 0 stops this rank
    _exit_with_parent(args.parent)

    from .launch import RENDEZVOUS_TIMEOUT_S, STORE_PREFIX

    host, _, port = args.store.rpartition(":")
    server = dist.TCPStore(host, int(port), is_master=False, timeout=timedelta(seconds=RENDEZVOUS_TIMEOUT_S))
    store = dist.PrefixStore(STORE_PREFIX, server)
    plan = pickle.loads(store.get("plan"))
    store.set(f"joined/{args.rank}", "ok")
    from .group import init_tensor_parallel

    tp = init_tensor_parallel(args.rank, plan.world_size, backend=plan.backend, store=server)
    try:
        model, kv, runner = _load(plan, tp)
    except Exception as exc:  # rank 0 reports it and stops the daemon's start
        from ..errors import LoopcoderError

        message = str(exc) if isinstance(exc, LoopcoderError) else f"{type(exc).__name__}: {exc}"
        store.set(f"loaded/{args.rank}", message)
        log.error("could not load the shard: %s", message)
        _exit(1)
    store.set(f"loaded/{args.rank}", "ok")
    from .runner import follow

    try:
        follow(model, kv, runner.device, runner)
        tp.close()
    except RuntimeError as exc:  # a collective failed: rank 0 is gone, or another rank
        log.error("rank %d stopped following rank 0: %s", args.rank, exc)
        _exit(1)
    except Exception:
        log.exception("rank %d stopped following rank 0", args.rank)
        _exit(1)
    _exit(0)


def _load(plan, tp):
    import torch

    from ..engine import CacheLayout
    from .loading import load_shard

    if plan.threads:
        torch.set_num_threads(plan.threads)
    config = plan.engine_config_for(tp.rank)
    model = load_shard(plan.model_path, tp, config.dtype, config.device, quant=plan.quant)
    layout = CacheLayout.plan(model.config, config)  # what rank 0's Engine plans: the same pages
    kv = layout.allocate(model.config, config.device)
    return model, kv, layout.runner(model, kv, config.device)


def _exit_with_parent(parent: int) -> None:
    """Exit as soon as the daemon is gone, whatever this rank is doing (loading, waiting
    in a collective): a follower never outlives rank 0."""

    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        _exit(1)

    threading.Thread(target=poll, name="loopcoder-parent-watch", daemon=True).start()


def _exit(code: int) -> None:
    # Skip interpreter teardown: a gloo thread's destructor can abort it after the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
