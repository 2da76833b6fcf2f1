"""A real engine daemon (the default model) with real client processes over its unix socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from loopcoder.engine.serving.client import AutoStart, DaemonClient
from loopcoder.engine.errors import EngineUnavailableError, InvalidRequestError
from loopcoder.engine.serving.protocol import FrameDecoder, encode
from loopcoder.engine.sampling import DedentStop, FinishReason, SamplingParams

from .daemon_helpers import engine_command, running_engine, wait_ready

pytestmark = pytest.mark.slow

DOCS = {
    "fib.py": "def fib(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "add.py": "def add(a, b):\n    \"\"\"Return a plus b.\"\"\"\n",
    "greet.py": "def greet(name):\n    \"\"\"Say hello to name.\"\"\"\n",
}
PARAMS = SamplingParams(max_new_tokens=24, ignore_eos=True)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    # float32: a batch of several rows rounds like one row does, so answers can be compared
    # with the ones computed alone (bf16 and int4 kernels round differently per batch shape).
    with running_engine(tmp_path_factory.mktemp("engine"), "--dtype", "float32", "--quant", "none") as (process, socket_path):
        yield process, socket_path


@pytest.fixture
def client(engine):
    c = DaemonClient(engine[1], client_name="pytest")
    yield c
    c.close_connection()


def alone(client, name):
    return client.generate_for(f"alone/{name}", client.tokenizer.encode(DOCS[name]), PARAMS).text


def test_socket_is_private_and_hello_describes_the_model(engine, client):
    mode = stat.S_IMODE(os.stat(engine[1]).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(engine[1].parent).st_mode) & 0o077 == 0
    assert client.model_config.max_position_embeddings == 8192 and client.model_config.vocab_size > 40000
    assert client.tokenizer.encode("def f(): pass") == client.tokenizer.encode("def f(): pass") != []


CLIENT_SCRIPT = textwrap.dedent("""
    import json, sys
    from loopcoder.engine.serving.client import DaemonClient
    from loopcoder.engine.sampling import SamplingParams
    socket_path, name, text, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    client = DaemonClient(socket_path, client_name=name)
    params = SamplingParams(max_new_tokens=24, ignore_eos=True)
    out = []
    for _ in range(rounds):
        chunks = []
        result = client.generate_for("doc", client.tokenizer.encode(text), params,
                                     on_token=lambda token, delta: chunks.append(delta))
        out.append({"text": result.text, "streamed": "".join(chunks), "cached": result.usage.cached_tokens})
    print(json.dumps(out))
""")


def test_concurrent_client_processes_get_their_own_answers(engine, client):
    expected = {name: alone(client, name) for name in DOCS}
    procs = {name: subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, str(engine[1]), name, text, "2"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, text in DOCS.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        rounds = json.loads(out)
        assert [r["text"] for r in rounds] == [expected[name]] * 2
        assert all(r["streamed"] == r["text"] for r in rounds)
        assert rounds[1]["cached"] > 0  # the second round reused the document's warm K/V
    assert client.stats()["max_batch_seqs"] >= 2  # the processes' requests shared forward steps


def test_cancel_stops_a_long_generation(client):
    started = threading.Event()
    result = client.generate_for("long", client.tokenizer.encode("# a very long story\n"),
                                 SamplingParams(max_new_tokens=4000, ignore_eos=True),
                                 on_token=lambda t, s: started.set(), cancelled=started.is_set)
    assert result.finish_reason is FinishReason.CANCELLED and len(result.token_ids) < 200


def test_dedent_stop_crosses_the_wire(client):
    ids = client.tokenizer.encode("def fib(n):")
    free = client.generate_for("dedent", ids, SamplingParams(max_new_tokens=40)).text
    assert free.startswith("\n    if n") and "\n        return" in free  # what the model writes unhindered
    # The cursor's block is indented 8: the first whole line left of that ends it.
    cut = client.generate_for("dedent", ids, SamplingParams(max_new_tokens=40), stop_when=DedentStop(8, "def fib(n):"))
    assert cut.finish_reason is FinishReason.STOP and free.startswith(cut.text)
    assert cut.text.rstrip(" ").endswith(":\n") and "return" not in cut.text
    with pytest.raises(InvalidRequestError, match="DedentStop"):
        client.generate_for("dedent", ids, PARAMS, stop_when=lambda s: False)


def test_the_same_document_from_two_clients_is_stored_once(engine, client):
    other = DaemonClient(engine[1], client_name="second editor")
    try:
        text = "".join(f"def f{i}(x):\n    return x * {i}\n\n" for i in range(120))
        ids = client.tokenizer.encode(text)
        hits_before = client.stats()["prefix_hits"]
        first = client.prefill("shared.py", ids)
        second = other.prefill("shared.py", ids)
        assert first.cached_tokens == 0 or first.cached_tokens < len(ids) // 2
        assert second.cached_tokens >= len(ids) - 16  # every full block came from the first client's session
        assert client.stats()["prefix_hits"] - hits_before >= len(ids) // 16 - 1
    finally:
        other.close_connection()


def test_bad_requests_get_errors_and_the_connection_lives(client):
    with pytest.raises(InvalidRequestError, match="out of range"):
        client.generate_for("bad", [10**9], PARAMS)
    with pytest.raises(InvalidRequestError, match="unknown op"):
        client._call({"op": "explode"})
    with pytest.raises(InvalidRequestError, match="'key' is required"):
        client._call({"op": "generate", "ids": [1], "params": {}})
    with pytest.raises(InvalidRequestError, match="unknown sampling parameter"):
        client._call({"op": "generate", "key": "k", "ids": [1], "params": {"max_new_tokns": 3}})
    with pytest.raises(InvalidRequestError, match="temperature"):
        client._call({"op": "generate", "key": "k", "ids": [1], "params": {"temperature": -1}})
    with pytest.raises(InvalidRequestError, match="list of integer token ids"):
        client._call({"op": "sync", "key": "k", "ids": ["a"]})
    with pytest.raises(InvalidRequestError, match="unknown priority"):
        client._call({"op": "sync", "key": "k", "ids": [1], "priority": "urgent"})
    assert alone(client, "add.py")  # still answering


def raw_exchange(socket_path, payload: bytes, timeout=10.0) -> list[dict]:
    """Send bytes, half-close, and collect the frames the daemon answers before it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        decoder, frames = FrameDecoder(), []
        while True:
            data = s.recv(65536)
            if not data:
                return frames
            frames += decoder.feed(data)


@pytest.mark.parametrize("payload, code", [
    (b"\x00\x00\x00\x05hello", "protocol"),  # not msgpack
    (b"\xff\xff\xff\xff" + b"x" * 100, "protocol"),  # oversized length
    (b"\x00\x00\x00\x01\x93", "protocol"),  # truncated array inside a complete frame
    (b"\x00\x00\x00\x02\x91\x01", "protocol"),  # a list, not a map
])
def test_malformed_frames_get_an_error_frame_then_close(engine, payload, code):
    frames = raw_exchange(engine[1], payload)
    assert frames and frames[-1]["type"] == "error" and frames[-1]["code"] == code


def test_wrong_version_and_truncated_frames(engine, client):
    import msgpack

    body = msgpack.packb({"v": 99, "id": 1, "op": "hello"})
    frames = raw_exchange(engine[1], len(body).to_bytes(4, "big") + body)
    assert "unsupported protocol version 99" in frames[-1]["message"]
    assert raw_exchange(engine[1], encode({"id": 1, "op": "stats"})[:7]) == []  # cut mid-frame: closed, no answer
    assert client.stats()["pid"] == engine[0].pid


def test_fuzzed_bytes_never_kill_the_daemon(engine, client):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=300),
                     st.builds(lambda n, b: n.to_bytes(4, "big") + b, st.integers(0, 2**32 - 1), st.binary(max_size=64))))
    def fuzz(payload):
        raw_exchange(engine[1], payload)

    fuzz()
    assert client.stats()["pid"] == engine[0].pid and alone(client, "fib.py")


def test_sigkilled_client_mid_stream_frees_its_work(engine, client):
    script = textwrap.dedent("""
        import sys
        from loopcoder.engine.serving.client import DaemonClient
        from loopcoder.engine.sampling import SamplingParams
        c = DaemonClient(sys.argv[1], client_name="doomed")
        c.generate_for("doc", c.tokenizer.encode("# story"), SamplingParams(max_new_tokens=100000 // 20, ignore_eos=True),
                       on_token=lambda t, s: print("tok", flush=True))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(engine[1])], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("tok")  # mid-stream
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and client.stats()["running"] > 0:
        time.sleep(0.1)
    stats = client.stats()
    assert stats["running"] == 0 and stats["queue_depth"] == 0
    assert alone(client, "greet.py")


def test_daemon_killed_mid_request_then_restarted(tmp_path):
    socket_path = tmp_path / "engine.sock"
    log_path = tmp_path / "engine.log"
    with open(log_path, "ab") as log:
        first = subprocess.Popen(engine_command(socket_path), stdout=log, stderr=log)
    try:
        wait_ready(first, socket_path, log_path)
        client = DaemonClient(socket_path, client_name="survivor")
        ids = client.tokenizer.encode(DOCS["fib.py"])
        client.prefill("kept.py", ids)
        errors = []

        def ask():
            try:
                client.generate_for("doc", ids, SamplingParams(max_new_tokens=100000 // 20, ignore_eos=True),
                                    on_token=lambda t, s: streaming.set())
            except EngineUnavailableError as exc:
                errors.append(exc)

        streaming = threading.Event()
        worker = threading.Thread(target=ask)
        worker.start()
        assert streaming.wait(60)
        first.kill()
        worker.join(10)
        first.wait()  # its listening socket is gone once it is reaped
        assert not worker.is_alive() and errors and "lost during the request" in str(errors[0])
        with pytest.raises(EngineUnavailableError, match="no loopcoder engine answers"):
            client.generate_for("doc", ids, PARAMS)  # nothing to reconnect to yet: a clear error, no hang
        with open(log_path, "ab") as log:
            second = subprocess.Popen(engine_command(socket_path), stdout=log, stderr=log)
        try:
            wait_ready(second, socket_path, log_path)
            assert client.generate_for("doc", ids, PARAMS).text  # reconnected
            assert client.reconnects >= 1
            deadline = time.monotonic() + 30  # the kept document was re-sent in the background
            while time.monotonic() < deadline and client.prefill("kept.py", ids).cached_tokens < len(ids) - 16:
                time.sleep(0.2)
            assert client.prefill("kept.py", ids).cached_tokens >= len(ids) - 16
        finally:
            second.terminate()
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()


def test_eviction_under_a_small_budget(tmp_path):
    """Four documents, used in turn, in a pool that holds two: each request takes the pages of
    idle ones and none fails, whatever dtype this machine's engine chose. The documents are
    sized from the pool the engine reports, never from a guess of its bytes per token."""
    with running_engine(tmp_path, "--kv-budget", "40MiB") as (_, socket_path):
        client = DaemonClient(socket_path, client_name="tight")
        stats = client.stats()
        capacity = stats["blocks_total"] * stats["block_size"]  # tokens the pool holds
        texts = [document_of(client.tokenizer, d, int(0.4 * capacity) - PARAMS.max_new_tokens) for d in range(4)]
        for round_ in range(2):
            for d, text in enumerate(texts):
                result = client.generate_for(f"doc{d}", client.tokenizer.encode(text), PARAMS)
                assert result.text
        stats = client.stats()
        assert stats["demotions"] + stats["evictions"] > 0


def document_of(tokenizer, seed: int, tokens: int) -> str:
    """Python source of about `tokens` tokens (at most that many), distinct per seed."""
    lines: list[str] = []
    while len(tokenizer.encode("".join(lines + [f"value_{seed}_{len(lines)} = {len(lines) * seed}\n"]))) <= tokens:
        lines.append(f"value_{seed}_{len(lines)} = {len(lines) * seed}\n")
    return "".join(lines)


def test_autostart_launches_a_daemon_that_exits_when_idle(tmp_path):
    socket_path = tmp_path / "auto" / "engine.sock"
    client = DaemonClient(socket_path, client_name="auto", autostart=AutoStart(("--threads", "1"), idle_timeout_s=3))
    pid = client.stats()["pid"]
    assert client.generate_for("d", client.tokenizer.encode("x = "), PARAMS).text
    client.close_connection()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and socket_path.exists():
        time.sleep(0.2)
    assert not socket_path.exists()
    while time.monotonic() < deadline and process_alive(pid):
        time.sleep(0.1)
    assert not process_alive(pid)


def process_alive(pid: int) -> bool:
    """Running (a zombie awaiting its parent's wait counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_socket_directory_is_made_private_and_a_live_socket_is_not_taken_over(tmp_path):
    import asyncio

    from loopcoder.engine.serving.daemon import EngineServer
    from loopcoder.engine.errors import LoopcoderError

    from .helpers import tiny_engine

    directory = tmp_path / "sockets"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    engine = tiny_engine("llama")

    async def scenario():
        first = EngineServer(engine, directory / "engine.sock")
        server = await first._listen()
        try:
            assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
            assert stat.S_IMODE(os.stat(directory / "engine.sock").st_mode) == 0o600
            with pytest.raises(LoopcoderError, match="already listens"):
                await EngineServer(engine, directory / "engine.sock")._listen()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_two_clients_autostarting_at_once_start_one_engine(tmp_path):
    """Both find no engine and both start one. One engine serves both; the other is gone
    at once, without loading its model twice over: it finds the socket's lock taken and
    exits 3, or, had it not got that far, the client that started it stops it once the
    other answers. Before, it loaded its model, found the socket taken and exited 2, or,
    when the first engine had stopped by then, took the socket and lived on, unused, until
    its idle timeout (seen after `make demo`)."""
    import threading

    socket_path = tmp_path / "race" / "engine.sock"
    auto = AutoStart(("--threads", "1"), idle_timeout_s=5)
    clients, errors = [], []
    barrier = threading.Barrier(2)

    def start():
        barrier.wait()
        try:
            clients.append(DaemonClient(socket_path, client_name="racer", autostart=auto))
        except Exception as exc:  # noqa: BLE001  reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(clients) == 2
    pids = {c.stats()["pid"] for c in clients}
    assert len(pids) == 1  # both talk to one engine
    loser = next(c.started_engine for c in clients if c.started_engine.pid not in pids)
    try:
        code = loser.wait(2)
    except subprocess.TimeoutExpired:
        code = None
    assert code in (3, -signal.SIGTERM), f"the unused engine is still running or failed: {code}"
    log = (socket_path.with_suffix(".log")).read_text()
    assert log.count("listening on") == 1, log
    clients[0].shutdown()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (socket_path.exists() or process_alive(next(iter(pids)))):
        time.sleep(0.1)
    assert not socket_path.exists() and not process_alive(next(iter(pids)))
    # Nothing else took the socket after the first engine stopped.
    time.sleep(1.0)
    assert not socket_path.exists()


def test_a_second_engine_on_a_busy_socket_exits_3_at_once(golden_dir, tmp_path):
    with running_engine(tmp_path, "--model", str(golden_dir), "--dtype", "float32") as (process, socket_path):
        started = time.monotonic()
        done = subprocess.run(engine_command(socket_path, "--model", str(golden_dir), "--dtype", "float32"),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 3, done.stderr
        assert f"another engine is starting or running on {socket_path}" in done.stderr
        assert time.monotonic() - started < 30  # refused before loading a model
        assert DaemonClient(socket_path, client_name="still there").stats()["pid"] == process.pid
