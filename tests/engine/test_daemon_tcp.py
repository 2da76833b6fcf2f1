"""The engine daemon on loopback TCP with a token (the transport of systems without unix
sockets, Windows), forced on Linux: a daemon in this process (a tiny random model) and raw
peers that do everything wrong, and one real `loopcoder engine` started over a stale file.

Every refused peer gets an `unauthorized` error and is closed and logged, and the daemon
keeps serving the others. The client refuses an endpoint file others may read; the daemon
rewrites it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from loopcoder.engine.errors import EngineBusyError, EngineUnavailableError, InvalidRequestError, LoopcoderError
from loopcoder.engine.sampling import SamplingParams
from loopcoder.engine.serving import socket_file
from loopcoder.engine.serving.client import AutoStart, DaemonClient
from loopcoder.engine.serving.protocol import FrameDecoder, encode
from loopcoder.engine.serving.socket_file import (
    TRANSPORT_ENV,
    answers,
    claim_socket,
    daemon_transport,
    open_connection,
    socket_claimed,
)
from loopcoder.engine.serving.tcp_endpoint import Endpoint, read_endpoint, write_endpoint

from .helpers import tiny_engine

AUTH_TIMEOUT_S = 0.5  # the in-process daemon's wait for a token (the real one waits 10 s)
REFUSED = "loopcoder.engine.serving.tcp_endpoint"


@contextmanager
def tcp_daemon(path: Path):
    """An EngineServer on loopback TCP in a thread of this process; stopped on exit."""
    from loopcoder.engine.serving.daemon import EngineServer

    server = EngineServer(tiny_engine(), path, transport="tcp", auth_timeout_s=AUTH_TIMEOUT_S)
    failed: list[BaseException] = []

    def serve():
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # noqa: BLE001  raised below, on the test's thread
            failed.append(exc)

    thread = threading.Thread(target=serve, name="tcp-daemon", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.endpoint is not None and path.exists()):
        if failed:
            raise failed[0]
        assert time.monotonic() < deadline, "the daemon did not start listening"
        time.sleep(0.01)
    try:
        yield server
    finally:
        if not server._loop.is_closed():  # else it stopped already (a shutdown request)
            server._loop.call_soon_threadsafe(server._stop.set)
        thread.join(20)
        assert not thread.is_alive()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    path = tmp_path_factory.mktemp("tcp") / "engine.sock"
    with tcp_daemon(path) as server:
        yield server


def served(path: Path) -> bool:
    """A real client connects, asks, and is answered."""
    client = DaemonClient(path, client_name="honest")
    try:
        result = client.generate_for("doc", [1, 2, 3], SamplingParams(max_new_tokens=2, ignore_eos=True))
        return len(result.token_ids) == 2 and client.stats()["pid"] == os.getpid()
    finally:
        client.close_connection()


def peer(daemon) -> socket.socket:
    return socket.create_connection((daemon.endpoint.host, daemon.endpoint.port), timeout=10)


def answers_then_closes(sock: socket.socket) -> list[dict]:
    """Every frame the daemon sends before it closes the connection."""
    decoder, frames = FrameDecoder(), []
    with sock:
        while True:
            data = sock.recv(65536)
            if not data:
                return frames
            frames += decoder.feed(data)


def refused(frames: list[dict], reason: str) -> bool:
    return len(frames) == 1 and frames[0]["type"] == "error" and frames[0]["code"] == "unauthorized" \
        and reason in frames[0]["message"]


def test_the_endpoint_file_is_private_and_names_a_loopback_port(daemon):
    path = daemon.socket_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["transport"] == "tcp" and data["host"] == "127.0.0.1" and data["pid"] == os.getpid()
    assert data["port"] == daemon.endpoint.port and len(data["token"]) >= 32
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # the temporary file was renamed
    assert answers(path) and served(path)


@pytest.mark.parametrize("first, reason", [
    ({"id": 1, "op": "hello", "client": "no token"}, "not auth"),
    ({"id": 0, "op": "auth"}, "no token"),
    ({"id": 0, "op": "auth", "token": "x" * 43}, "a wrong token"),
    ({"id": 0, "op": "auth", "token": 12345}, "a wrong token"),
    ({"id": 0, "op": "auth", "token": "é" * 43}, "a wrong token"),
])
def test_a_connection_without_the_right_token_is_refused_and_logged(daemon, caplog, first, reason):
    with peer(daemon) as sock:
        sock.sendall(encode(first))
        sock.sendall(encode({"id": 2, "op": "stats"}))  # never answered: the connection is closed
        frames = answers_then_closes(sock)
    assert refused(frames, reason), frames
    assert any(r.name == REFUSED and "refused a connection from" in r.message and reason in r.message
               for r in caplog.records)
    assert served(daemon.socket_path)


@pytest.mark.parametrize("garbage, reason", [
    (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "over the token frame's"),  # "GET " read as a length
    (b"\x00\x00\x00\x05hello", "not valid msgpack"),
    (b"\x00\x00\x00\x02\x91\x01", "must hold a map"),
    (b"\xff\xff\xff\xff" + b"x" * 100, "over the token frame's"),
])
def test_garbage_before_the_token_is_refused(daemon, garbage, reason):
    token = daemon.endpoint.token
    with peer(daemon) as sock:
        sock.sendall(garbage + encode({"id": 0, "op": "auth", "token": token}))
        frames = answers_then_closes(sock)
    assert refused(frames, reason), frames
    assert served(daemon.socket_path)


@pytest.mark.parametrize("sent", [b"", b"\x00\x00", b"\x00\x00\x00\x40" + b"\x81"])
def test_a_client_that_never_sends_the_token_is_closed_after_the_timeout(daemon, caplog, sent):
    """Nothing, half a header, half a frame: closed after the daemon's wait, while an honest
    client is served meanwhile."""
    started = time.monotonic()
    with peer(daemon) as sock:
        sock.sendall(sent)
        assert served(daemon.socket_path)  # not held up by the silent one
        frames = answers_then_closes(sock)
    waited = time.monotonic() - started
    assert refused(frames, f"no token within {AUTH_TIMEOUT_S:g} s"), frames
    assert AUTH_TIMEOUT_S * 0.9 <= waited < AUTH_TIMEOUT_S + 5
    assert any("no token within" in r.message for r in caplog.records if r.name == REFUSED)


def test_many_silent_connections_do_not_count_as_clients(daemon):
    socks = [peer(daemon) for _ in range(20)]
    client = DaemonClient(daemon.socket_path, client_name="counted")
    try:
        assert [c.split("#")[0] for c in client.stats()["clients"]] == ["counted"]
    finally:
        client.close_connection()
        for s in socks:
            s.close()


def test_the_token_handshake_pipelines_with_the_first_request(daemon):
    """A client may send its requests right behind the token: none of their bytes is lost."""
    with peer(daemon) as sock:
        sock.sendall(encode({"id": 0, "op": "auth", "token": daemon.endpoint.token}) + encode({"id": 1, "op": "stats"}))
        decoder, frames = FrameDecoder(), []
        while len(frames) < 2:
            frames += decoder.feed(sock.recv(65536))
    assert frames[0] == {"v": 1, "id": 0, "type": "result"}
    assert frames[1]["id"] == 1 and frames[1]["type"] == "result" and frames[1]["stats"]["pid"] == os.getpid()


def test_an_endpoint_file_others_may_read_is_refused_by_the_client(daemon, tmp_path):
    copy = tmp_path / "engine.sock"
    copy.write_text(daemon.socket_path.read_text())
    copy.chmod(0o644)
    for autostart in (None, AutoStart(("--threads", "1"), ready_timeout_s=5)):
        with pytest.raises(EngineUnavailableError, match=r"is readable by other users \(mode 0644\).*not used"):
            DaemonClient(copy, client_name="careful", autostart=autostart)  # and no engine was started
    copy.chmod(0o600)
    assert served(copy)  # the same endpoint, made private: used


def test_the_daemon_rewrites_an_endpoint_file_others_could_read(tmp_path):
    path = tmp_path / "engine.sock"
    path.write_text(json.dumps({"transport": "tcp", "host": "127.0.0.1", "port": 9, "token": "old", "pid": 1}))
    path.chmod(0o666)
    with tcp_daemon(path) as server:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert read_endpoint(path) == server.endpoint
        assert served(path)
    assert not path.exists()  # removed when the daemon stopped


def dead_port() -> int:
    """A loopback port nothing listens on (just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_stale_endpoint_file_is_reported_clearly(tmp_path):
    path = tmp_path / "engine.sock"
    write_endpoint(path, Endpoint(dead_port(), "t" * 43, 4242))
    assert not answers(path)
    with pytest.raises(EngineUnavailableError, match=r"no loopcoder engine answers on .*nothing answers on "
                                                     r"127\.0\.0\.1:\d+, which .* names: the engine that wrote it "
                                                     r"\(pid 4242\) is gone"):
        DaemonClient(path, client_name="late")


def test_a_stale_endpoint_file_whose_port_another_engine_took_is_refused(daemon, tmp_path):
    """The port now belongs to another engine, whose token differs: refused by it, reported as stale."""
    path = tmp_path / "engine.sock"
    write_endpoint(path, Endpoint(daemon.endpoint.port, "t" * 43, 4242))
    assert not answers(path)
    with pytest.raises(EngineUnavailableError, match="refused the token of .*not the engine that wrote it"):
        DaemonClient(path, client_name="late")
    assert served(daemon.socket_path)


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"transport": "tcp"}',
                                     '{"transport": "tcp", "host": "example.com", "port": 80, "token": "abc", "pid": 1}',
                                     '{"transport": "tcp", "host": "127.0.0.1", "port": 0, "token": "abc", "pid": 1}',
                                     '{"transport": "tcp", "host": "127.0.0.1", "port": 80, "token": "a b", "pid": 1}'])
def test_a_file_that_is_not_an_endpoint_file_is_named(tmp_path, content):
    path = tmp_path / "engine.sock"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(EngineUnavailableError, match="is not an engine's endpoint file"):
        open_connection(path, 1.0)
    assert not answers(path)


def test_a_second_daemon_on_a_live_endpoint_file_refuses(daemon):
    from loopcoder.engine.serving.daemon import EngineServer

    second = EngineServer(tiny_engine(), daemon.socket_path, transport="tcp")
    with pytest.raises(LoopcoderError, match="already listens"):
        asyncio.run(second._listen())
    assert served(daemon.socket_path)


def test_the_transport_is_unix_where_the_os_has_it_and_can_be_forced(monkeypatch):
    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    assert daemon_transport() == "unix"  # Linux
    monkeypatch.setenv(TRANSPORT_ENV, "TCP")
    assert daemon_transport() == "tcp"
    monkeypatch.setenv(TRANSPORT_ENV, "pipe")
    with pytest.raises(InvalidRequestError, match="use unix or tcp"):
        daemon_transport()
    monkeypatch.setattr(socket_file, "unix_sockets_available", lambda: False)  # as on Windows
    monkeypatch.delenv(TRANSPORT_ENV)
    assert daemon_transport() == "tcp"
    monkeypatch.setenv(TRANSPORT_ENV, "unix")
    with pytest.raises(InvalidRequestError, match="no unix sockets"):
        daemon_transport()


def test_without_unix_sockets_a_missing_endpoint_file_is_no_engine(monkeypatch, tmp_path):
    monkeypatch.setattr(socket_file, "unix_sockets_available", lambda: False)
    with pytest.raises(EngineUnavailableError, match="no loopcoder engine answers on .*no endpoint file"):
        DaemonClient(tmp_path / "engine.sock", client_name="windows")


def test_the_default_path_on_windows_is_in_local_app_data(monkeypatch, tmp_path):
    monkeypatch.delenv("LOOPCODER_SOCKET", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(socket_file.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
    assert socket_file.default_socket_path() == tmp_path / "loopcoder" / "engine.sock"
    assert not socket_file.unix_sockets_available()


def test_the_lock_admits_one_engine(tmp_path):
    path = tmp_path / "locks" / "engine.sock"
    assert not socket_claimed(path)
    lock = claim_socket(path)
    try:
        assert socket_claimed(path)
        with pytest.raises(EngineBusyError, match="another engine is starting or running"):
            claim_socket(path)
    finally:
        lock.release()
    assert not socket_claimed(path)
    claim_socket(path).release()


@pytest.mark.slow
def test_a_client_over_a_stale_endpoint_file_starts_a_new_engine(golden_dir, tmp_path, monkeypatch):
    """The real `loopcoder engine`, forced onto TCP, autostarted over a dead engine's file:
    it takes the path, rewrites the file, serves, and removes it when stopped."""
    monkeypatch.setenv(TRANSPORT_ENV, "tcp")
    path = tmp_path / "engine.sock"
    write_endpoint(path, Endpoint(dead_port(), "t" * 43, 4242))
    path.chmod(0o644)  # and with rights too wide: the daemon replaces it all the same
    auto = AutoStart(("--threads", "1", "--model", str(golden_dir), "--dtype", "float32"), idle_timeout_s=30)
    with pytest.raises(EngineUnavailableError, match="readable by other users"):
        DaemonClient(path, client_name="careful", autostart=auto)
    path.chmod(0o600)
    client = DaemonClient(path, client_name="returning", autostart=auto)
    try:
        endpoint = read_endpoint(path)
        assert endpoint.pid == client.started_engine.pid == client.stats()["pid"] and endpoint.token != "t" * 43
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert client.generate_for("d", [1, 2, 3], SamplingParams(max_new_tokens=2, ignore_eos=True)).token_ids
        log = path.with_suffix(".log").read_text()
        assert "listening on loopback TCP" in log
    finally:
        client.shutdown()
        client.started_engine.wait(30)
    assert not path.exists()


def test_a_daemon_stopped_with_clients_connected_logs_no_error(tmp_path, caplog):
    """Their connections end after the workers are shut: their documents end with the daemon
    (an ERROR 'cannot schedule new futures after shutdown' from asyncio, on either transport, before)."""
    path = tmp_path / "engine.sock"
    with tcp_daemon(path):
        others = [DaemonClient(path, client_name=f"editor{i}") for i in range(2)]
        others[0].prefill("doc", [1, 2, 3])
        DaemonClient(path, client_name="stopper").shutdown()
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
