"""The engine daemon under attack and under careless clients (issue 21): a real `loopcoder
engine` process (the default model, one thread) and raw clients on its unix socket.

Each test is one probe that once failed: every request gets exactly one answer, a client's
sessions end with its connection, a client that does not read cannot grow the daemon, and a
client that comes back while the daemon dies starts a new one.
"""

from __future__ import annotations

import socket
import time

import msgpack
import pytest

from loopcoder.engine.errors import EngineUnavailableError, InvalidRequestError
from loopcoder.engine.serving.client import AutoStart, DaemonClient
from loopcoder.engine.serving.protocol import MAX_FRAME_BYTES, FrameDecoder, encode

from ..engine.daemon_helpers import running_engine
from .probes import kill_storm, rss_bytes, settle

pytestmark = pytest.mark.slow

ANSWER_TIMEOUT_S = 30.0  # a request unanswered this long is a hang


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with running_engine(tmp_path_factory.mktemp("faults")) as (process, socket_path):
        yield process, socket_path


@pytest.fixture
def client(engine):
    c = DaemonClient(engine[1], client_name="faults")
    yield c
    c.close_connection()


class RawClient:
    """A client that writes frames by hand and reads them back with a deadline."""

    def __init__(self, socket_path, timeout: float = ANSWER_TIMEOUT_S) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        self.decoder = FrameDecoder()
        self.frames: list[dict] = []

    def send(self, message: dict) -> None:
        self.sock.sendall(encode(message))

    def send_raw(self, message: dict) -> None:
        """A frame `encode` would refuse (too large for a reply, fine for a request)."""
        body = msgpack.packb({"v": 1, **message}, use_bin_type=True)
        self.sock.sendall(len(body).to_bytes(4, "big") + body)

    def answer(self, request_id: int) -> dict:
        """The `result` or `error` frame of `request_id` (chunks skipped)."""
        while True:
            for i, frame in enumerate(self.frames):
                if frame.get("id") == request_id and frame.get("type") in ("result", "error"):
                    return self.frames.pop(i)
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError(f"closed before answering request {request_id}")
            self.frames += self.decoder.feed(data)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("message", [
    {"op": "x" * (MAX_FRAME_BYTES - 80)},
    {"op": "sync", "key": "k", "ids": [1], "priority": "p" * (MAX_FRAME_BYTES - 80)},
    {"op": "generate", "key": "k", "ids": [1], "params": {"k" * (MAX_FRAME_BYTES - 80): 1}},
], ids=["op", "priority", "sampling-key"])
def test_an_error_that_repeats_a_huge_value_is_still_answered(engine, client, message):
    raw = RawClient(engine[1])
    try:
        raw.send_raw({"id": 7, **message})
        answer = raw.answer(7)
    finally:
        raw.close()
    assert answer["type"] == "error" and answer["code"] == "invalid_request"
    assert len(answer["message"]) < 400 and "characters" in answer["message"]
    assert client.stats()["pid"] == engine[0].pid


def test_error_messages_name_what_was_wrong_even_when_it_is_empty_or_too_deep(engine, client):
    with pytest.raises(InvalidRequestError, match=r"unknown sampling parameter\(s\): ''"):
        client._call({"op": "generate", "key": "k", "ids": [1], "params": {"": 1}})
    deep = b"\x91" * 2000 + b"\x80"  # 2,000 nested one-element arrays around a map
    raw = RawClient(engine[1])
    try:
        raw.sock.sendall(len(deep).to_bytes(4, "big") + deep)
        frame = raw.answer(None)
    finally:
        raw.close()
    assert frame["code"] == "protocol" and "nested" in frame["message"]


def test_sessions_end_with_their_connection_even_while_their_opens_wait_for_a_worker(engine, client):
    before = client.stats()["sessions"]
    raw = RawClient(engine[1])
    prompt = client.tokenizer.encode("def busy(n):\n    return n\n" * 20)
    for i in range(4):  # keep the engine busy, so the opens queue behind these
        raw.send({"id": 1000 + i, "op": "generate", "key": f"busy{i}", "ids": prompt,
                  "params": {"max_new_tokens": 48, "ignore_eos": True}})
    for i in range(100):
        raw.send({"id": i + 1, "op": "open", "key": f"doc{i}"})
    raw.close()
    assert settle(lambda: client.stats()["sessions"] == before, timeout=60), \
        f"{client.stats()['sessions'] - before} sessions outlived their connection"


def test_a_client_that_never_reads_cannot_grow_the_daemon(engine, client):
    pid = engine[0].pid
    client.stats()
    start = rss_bytes(pid)
    raw = RawClient(engine[1])
    try:
        for i in range(300):  # each answer holds the tokenizer: about 1.5 MB for 22 bytes asked
            raw.send({"id": i + 1, "op": "hello"})
        time.sleep(3.0)
        grown = rss_bytes(pid) - start
        assert client.stats()["pid"] == pid  # others are still served
    finally:
        raw.close()
    assert grown < 100 << 20, f"the daemon grew by {grown >> 20} MB for a client that does not read"


def test_a_client_coming_back_while_the_daemon_dies_starts_a_new_one(tmp_path):
    socket_path = tmp_path / "engine.sock"
    client = DaemonClient(socket_path, client_name="returning", autostart=AutoStart(("--threads", "1"), idle_timeout_s=30))
    engines = [client.started_engine]
    first_pid = client.server_info["pid"]
    try:
        DaemonClient(socket_path, client_name="stopper").shutdown()  # the daemon stops 50 ms after answering
        pids, deadline = [], time.monotonic() + 1.5
        while time.monotonic() < deadline:  # come back again and again through its death
            client.close_connection()
            client.connect()  # must reach that daemon or a new one, never fail
            try:
                pids.append(client.stats()["pid"])
            except EngineUnavailableError as exc:  # only a request the dying daemon took may be lost
                assert "lost during the request" in str(exc)
            engines.append(client.started_engine)
    finally:
        client.close_connection()
        try:
            DaemonClient(socket_path, client_name="cleanup").shutdown()
        except Exception:
            pass
        for process in {id(p): p for p in engines if p is not None}.values():
            try:
                process.wait(30)
            except Exception:
                process.kill()
    assert pids[-1] != first_pid


def _fuzzed_requests():
    from hypothesis import strategies as st

    scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                       st.text(max_size=20), st.binary(max_size=8))
    value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                         max_leaves=6)
    params = st.dictionaries(
        st.sampled_from(["max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop", "stop_token_ids",
                         "ignore_eos", "json_schema", "", "max_tokens"]),
        value, max_size=4).map(lambda p: {**p, "max_new_tokens": p["max_new_tokens"]}
                              if isinstance(p.get("max_new_tokens"), int) and 0 <= p["max_new_tokens"] <= 4
                              else {**p, "max_new_tokens": 2})
    fields = st.fixed_dictionaries({}, optional={
        "key": st.one_of(st.text(max_size=12), value), "ids": st.one_of(st.lists(st.integers(-3, 60_000), max_size=6), value),
        "params": st.one_of(params, value), "priority": st.one_of(st.sampled_from(["interactive", "background", "urgent"]), value),
        "stream": st.one_of(st.booleans(), value), "target": st.one_of(st.integers(0, 10), value), "client": value,
        "keep_cached": value, "healed_text": value, "stop_dedent": value})
    ops = st.one_of(st.sampled_from(["hello", "open", "sync", "close", "generate", "cancel", "stats"]),
                    st.text(max_size=10).filter(lambda op: op != "shutdown"), value)
    request = st.builds(lambda op, extra: {**extra, "op": op}, ops, fields)
    return st.lists(request, min_size=1, max_size=5)


def test_every_fuzzed_request_gets_exactly_one_answer(engine, client):
    from hypothesis import HealthCheck, given, settings

    before = client.stats()["sessions"]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_fuzzed_requests())
    def fuzz(requests):
        raw = RawClient(engine[1])
        try:
            for request_id, request in enumerate(requests, 1):
                raw.send({**request, "id": request_id})
            answers = [raw.answer(request_id) for request_id in range(1, len(requests) + 1)]
            raw.sock.shutdown(socket.SHUT_WR)  # the daemon closes its side; nothing else may come
            while data := raw.sock.recv(1 << 16):
                raw.frames += raw.decoder.feed(data)
        finally:
            raw.close()
        assert all(a["type"] == "result" or a.get("message") for a in answers)  # errors say why
        extra = [f for f in raw.frames if f.get("type") != "chunk"]
        assert extra == [], f"answers nobody asked for: {extra}"

    fuzz()
    assert client.stats()["pid"] == engine[0].pid
    assert settle(lambda: client.stats()["sessions"] == before, timeout=30)


def test_kill_storms_free_the_work_and_the_memory_comes_back(engine, client):
    pid = engine[0].pid
    idle = lambda: (lambda s: s["running"] == 0 and s["queue_depth"] == 0)(client.stats())  # noqa: E731
    base = client.stats()
    assert kill_storm(engine[1], 12) == 12  # the first storm: what the daemon keeps once it has seen one
    assert settle(idle, timeout=60)
    settled = rss_bytes(pid)
    for _ in range(2):
        assert kill_storm(engine[1], 12) == 12
    # Idle, and every killed client's document closed (just after its request ended).
    assert settle(lambda: idle() and client.stats()["sessions"] == base["sessions"], timeout=60)
    stats = client.stats()
    assert stats["blocks_free"] + stats["blocks_cached"] >= base["blocks_free"]
    after = rss_bytes(pid)
    print(f"RSS settled {settled >> 20} MB, after two more storms {after >> 20} MB")
    assert after <= settled * 1.10, f"RSS {after >> 20} MB after the storms, settled at {settled >> 20} MB"
