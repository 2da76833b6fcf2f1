"""`loopcoder engine --tensor-parallel 2` on CPU (gloo): the daemon is rank 0 and starts
rank 1 as a child process, each loading only its shard of the golden Loop model (a
safetensors directory). Driven over its socket by the real client, it answers as one
process does; however it stops, no rank is left behind; a dead rank stops it with a
clear error; a split that cannot work is refused before any rank starts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loopcoder.engine.serving.client import DaemonClient
from loopcoder.engine.sampling import SamplingParams
from loopcoder.lsp.cli import main as cli_main

from .daemon_helpers import engine_command, running_engine
from .helpers import golden_engine

ENGINE_ARGS = ("--tensor-parallel", "2", "--dtype", "float32", "--quant", "none", "--kv-budget", "4MiB")
EXIT_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def cases(golden_dir):
    return load_file(golden_dir / "cases.safetensors")


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout_s: float = EXIT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)], "a tensor-parallel rank outlived the daemon"


def log_of(directory: Path) -> str:
    return (directory / "engine.log").read_text()


def test_two_ranks_serve_like_one_process_and_stop_together(golden_dir, cases, tmp_path):
    prompt = cases["greedy_prompt"].tolist()
    reference = golden_engine(golden_dir, kv_budget_bytes=1 << 22, block_size=16)
    sampled = SamplingParams(max_new_tokens=12, temperature=0.9, top_k=20, seed=3, ignore_eos=True)
    edited = prompt[:20] + [7, 99, 5]
    want_sampled = reference.generate_for("doc", prompt, sampled).token_ids
    want_edited = reference.generate_for("doc", edited, SamplingParams(max_new_tokens=8, ignore_eos=True))
    with running_engine(tmp_path, "--model", str(golden_dir), *ENGINE_ARGS) as (process, socket_path):
        client = DaemonClient(socket_path, client_name="pytest")
        stats = client.stats()
        assert stats["tensor_parallel"] == 2 and len(stats["tensor_parallel_pids"]) == 1
        followers = stats["tensor_parallel_pids"]
        client.open("doc")
        usage = client.prefill("doc", prompt)
        assert usage.prefill_tokens == len(prompt)
        greedy = client.generate_for("doc", prompt, SamplingParams(max_new_tokens=16, ignore_eos=True))
        assert greedy.token_ids == cases["greedy_full"].tolist()  # the reference's full-sequence path
        assert greedy.usage.cached_tokens == len(prompt) - 1  # warm: the sync's K/V on both ranks (the last token reruns)
        assert client.generate_for("doc", prompt, sampled).token_ids == want_sampled
        result = client.generate_for("doc", edited, SamplingParams(max_new_tokens=8, ignore_eos=True))
        assert result.token_ids == want_edited.token_ids and result.usage.cached_tokens >= 16

        status = subprocess.run(engine_command(socket_path)[:3] + ["status", "--socket", str(socket_path)],
                                capture_output=True, text=True, timeout=60)
        assert f"2 ranks: rank 0 here, followers pid {followers[0]}" in status.stdout, status.stdout + status.stderr

        client.shutdown()
        assert process.wait(EXIT_TIMEOUT_S) == 0, log_of(tmp_path)
        wait_gone(followers)
        assert not socket_path.exists()


def test_two_quantized_ranks_serve(golden_dir, cases, tmp_path):
    """--quant with --tensor-parallel: each rank quantizes its shard as it loads."""
    from loopcoder.engine.parallel import TensorParallelGroup
    from loopcoder.engine.parallel.loading import load_shard
    from loopcoder.engine.quantization import weight_bytes

    float_shard = weight_bytes(load_shard(golden_dir, TensorParallelGroup(rank=0, world_size=2), torch.float32, "cpu"))
    args = ("--tensor-parallel", "2", "--dtype", "float32", "--quant", "int8", "--kv-budget", "4MiB")
    prompt = cases["greedy_prompt"].tolist()
    with running_engine(tmp_path, "--model", str(golden_dir), *args) as (process, socket_path):
        client = DaemonClient(socket_path, client_name="pytest")
        stats = client.stats()
        assert stats["tensor_parallel"] == 2 and stats["weight_bytes"] < 0.6 * float_shard
        client.open("doc")
        result = client.generate_for("doc", prompt, SamplingParams(max_new_tokens=12, ignore_eos=True))
        assert len(result.token_ids) == 12
        followers = stats["tensor_parallel_pids"]
        client.shutdown()
        assert process.wait(EXIT_TIMEOUT_S) == 0, log_of(tmp_path)
        wait_gone(followers)


@pytest.mark.parametrize("how", ["sigterm", "idle"])
def test_sigterm_or_idle_exit_stops_every_rank(golden_dir, tmp_path, how):
    with running_engine(tmp_path, "--model", str(golden_dir), *ENGINE_ARGS, "--idle-timeout", "1") as (process, socket_path):
        client = DaemonClient(socket_path, client_name="pytest")
        followers = client.stats()["tensor_parallel_pids"]
        client.close_connection()
        if how == "sigterm":
            process.send_signal(signal.SIGTERM)
        assert process.wait(EXIT_TIMEOUT_S) == 0, log_of(tmp_path)
        wait_gone(followers)


def test_a_killed_rank_stops_the_daemon_with_a_clear_error(golden_dir, tmp_path):
    with running_engine(tmp_path, "--model", str(golden_dir), *ENGINE_ARGS) as (process, socket_path):
        client = DaemonClient(socket_path, client_name="pytest")
        follower = client.stats()["tensor_parallel_pids"][0]
        os.kill(follower, signal.SIGKILL)
        assert process.wait(EXIT_TIMEOUT_S) == 2
        assert f"tensor-parallel rank 1 (pid {follower}) exited with status -9 while serving" in log_of(tmp_path)
        assert not socket_path.exists()


def test_followers_exit_when_the_daemon_is_killed(golden_dir, tmp_path):
    with running_engine(tmp_path, "--model", str(golden_dir), *ENGINE_ARGS) as (process, socket_path):
        followers = DaemonClient(socket_path, client_name="pytest").stats()["tensor_parallel_pids"]
        process.kill()
        process.wait()
        wait_gone(followers, timeout_s=10)


def test_a_rank_that_cannot_load_fails_the_start(golden_dir, tmp_path):
    """Rank 1 fails to load (injected into the worker only); the daemon exits with its message."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import sys\n"
        "if '--rank' in sys.argv:\n"
        "    import loopcoder.engine.parallel.loading as loading\n"
        "    from loopcoder.engine.errors import ModelLoadError\n"
        "    def load_shard(*args, **kwargs):\n"
        "        raise ModelLoadError('disk on fire')\n"
        "    loading.load_shard = load_shard\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(inject), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(engine_command(tmp_path / "engine.sock", "--model", str(golden_dir), *ENGINE_ARGS),
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "loopcoder: error: tensor-parallel rank 1 could not load its shard: disk on fire" in done.stderr


@pytest.mark.parametrize("extra,message", [
    (("--tensor-parallel", "3"), "num_attention_heads=4 is not divisible by 3"),
    (("--tensor-parallel", "0"), "--tensor-parallel must be at least 1"),
    (("--tensor-parallel", "2", "--device", "cuda:1"), "pass --device cuda"),
])
def test_a_split_that_cannot_work_is_refused_before_any_rank_starts(golden_dir, tmp_path, capsys, extra, message):
    argv = ["engine", "--model", str(golden_dir), "--socket", str(tmp_path / "engine.sock"), *extra]
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "engine.sock").exists()


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="2 GPUs are visible: the split would start")
def test_more_ranks_than_gpus_is_refused(golden_dir, tmp_path, capsys):
    argv = ["engine", "--model", str(golden_dir), "--socket", str(tmp_path / "engine.sock"), "--device", "cuda",
            "--tensor-parallel", "2"]
    assert cli_main(argv) == 2
    assert f"--tensor-parallel 2 needs 2 GPUs, one per rank, but {torch.cuda.device_count()}" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (the device tool's x2 kinds)")
def test_two_gpus_over_nccl_serve_like_one_process(golden_dir, cases, tmp_path):
    """The same daemon with rank r on cuda:r: NCCL carries the tensors, gloo the steps."""
    prompt = cases["greedy_prompt"].tolist()
    args = ("--tensor-parallel", "2", "--device", "cuda", "--dtype", "float32", "--quant", "none", "--kv-budget", "4MiB")
    with running_engine(tmp_path, "--model", str(golden_dir), *args) as (process, socket_path):
        client = DaemonClient(socket_path, client_name="pytest")
        followers = client.stats()["tensor_parallel_pids"]
        client.open("doc")
        greedy = client.generate_for("doc", prompt, SamplingParams(max_new_tokens=16, ignore_eos=True))
        assert greedy.token_ids == cases["greedy_full"].tolist()
        again = client.generate_for("doc", prompt[:20] + [7, 99, 5], SamplingParams(max_new_tokens=8, ignore_eos=True))
        assert again.usage.cached_tokens >= 16 and len(again.token_ids) == 8
        client.shutdown()
        assert process.wait(EXIT_TIMEOUT_S) == 0, log_of(tmp_path)
        wait_gone(followers)
