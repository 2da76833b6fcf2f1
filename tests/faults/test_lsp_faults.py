"""Faults found by probing the language server (issue 21), driven in raw bytes against the real
`loopcoder lsp`: a subprocess on stdio (one per module) or on TCP, or `build_server` in a thread
over pipes where a test looks at the server's state. No test loads a model: the client never sends
`initialized`, and textDocument/hover (a method the server does not offer) or a completion for a
document that is not open is answered without one.

6. a request whose params do not fit lsprotocol's types got no answer at all;
7. framing: a 50 GB Content-Length killed the server, and a header it could not match left it deaf;
8. `loopcoder lsp --tcp 0.0.0.0:PORT` served every interface with no token.
"""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopcoder.lsp.features.documents import DocumentOutOfSyncError
from loopcoder.lsp.cli import main
from loopcoder.lsp.features.settings import ServerSettings
from loopcoder.lsp.server import build_server
from loopcoder.lsp.server.framing import MAX_MESSAGE_BYTES, FrameDecoder, Problem

from .lsp_wire import NO_MODEL, ServerProcess, ThreadedServer, frame, free_port, hover_params, request_bytes, tcp_client

INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, SERVER_NOT_INITIALIZED = -32602, -32600, -32601, -32002
UINT = "expected an integer in 0..2147483647"


@pytest.fixture(scope="module")
def server():
    process = ServerProcess()
    client = process.stdio_client()
    answer = client.request("initialize", {"processId": None, "capabilities": {}, "initializationOptions": NO_MODEL})
    assert "capabilities" in answer["result"], answer
    yield process, client
    process.stop()


def _hover_answered(client, msg_id=None) -> dict:
    """A well-formed request (hover: not offered, so answered at once with MethodNotFound)."""
    msg_id = client.new_id() if msg_id is None else msg_id
    client.send(request_bytes(msg_id, "textDocument/hover", hover_params()))
    answer = client.answer(msg_id)
    assert answer["error"]["code"] == METHOD_NOT_FOUND, answer
    return answer


# -- 6. params that do not fit: every request gets -32602 naming the field ---------------------


@pytest.mark.parametrize("params,problem", [
    (hover_params(character=1.5), f"params.position.character: {UINT}, got 1.5"),
    (hover_params(line=-1), f"params.position.line: {UINT}, got -1"),
    (hover_params(line=2**31), f"params.position.line: {UINT}, got 2147483648"),
    (hover_params(character="3"), f'params.position.character: {UINT}, got "3"'),
    (hover_params(line=True), f"params.position.line: {UINT}, got true"),
    ({"textDocument": {"uri": "file:///a.py"}, "position": None}, "params.position: expected an object, got null"),
    (None, "params: expected an object, got null"),
    ({"textDocument": {"uri": 7}, "position": {"line": 0, "character": 0}}, "params.textDocument.uri: expected a string, got 7"),
], ids=["fraction", "negative", "over-2^31", "string", "bool", "null-position", "null-params", "uri-number"])
def test_a_request_whose_params_do_not_fit_gets_invalid_params_naming_the_field(server, params, problem):
    process, client = server
    msg_id = client.new_id()
    message = {"jsonrpc": "2.0", "id": msg_id, "method": "textDocument/hover", "params": params}
    client.send(frame(message))
    answer = client.answer(msg_id)
    assert answer["error"] == {"code": INVALID_PARAMS, "message": problem}
    assert client.answers[msg_id] == 1


def test_a_registered_feature_is_not_run_on_bad_params(server):
    """textDocument/completion is ours: the refusal comes before the handler (which would say the
    document is not open), and a fraction is never truncated into a position."""
    process, client = server
    answer = client.request("textDocument/completion", hover_params(line=0, character=2.5))
    assert answer["error"] == {"code": INVALID_PARAMS, "message": f"params.position.character: {UINT}, got 2.5"}
    whole = client.request("textDocument/completion", hover_params(line=0, character=2.0))  # 2.0 is the integer 2
    assert whole["error"]["code"] == INVALID_PARAMS and "is not open" in whole["error"]["message"], whole


def test_malformed_envelopes_with_an_id_are_answered(server):
    process, client = server
    no_version = client.new_id()
    client.send(frame({"id": no_version, "method": "textDocument/hover", "params": hover_params()}))
    assert client.answer(no_version)["error"]["code"] == INVALID_REQUEST
    notification_with_id = client.new_id()
    client.send(request_bytes(notification_with_id, "textDocument/didSave", {"textDocument": {"uri": "file:///a.py"}}))
    answer = client.answer(notification_with_id)
    assert answer["error"]["code"] == INVALID_REQUEST and "is a notification" in answer["error"]["message"]


def test_a_change_that_cannot_be_read_puts_its_document_out_of_sync(caplog):
    served = ThreadedServer(build_server(ServerSettings(prewarm=False)))
    client, uri = served.client, "file:///work/kept.py"
    try:
        client.request("initialize", {"processId": None, "capabilities": {}, "initializationOptions": NO_MODEL})
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                "text": "x = 1\n"}})
        bad_range = {"start": {"line": 0, "character": 1.5}, "end": {"line": 0, "character": 5}}
        with caplog.at_level(logging.WARNING):
            client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                                     "contentChanges": [{"range": bad_range, "text": "y"}]})
            _hover_answered(client)  # handled in order: the didChange has been seen
        field = "params.contentChanges[0].range.start.character"
        warnings = [r.getMessage() for r in caplog.records if "ignored notification" in r.getMessage()]
        assert len(warnings) == 1 and "textDocument/didChange" in warnings[0] and field in warnings[0], warnings
        assert any(field in text for text in client.logged("textDocument/didChange"))
        # The editor applied its change and we could not: our text no longer follows, and says so.
        assert not served.server.documents.in_sync(uri)
        with pytest.raises(DocumentOutOfSyncError, match="could not be read"):
            served.server.documents.get(uri)
        good_range = {"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 5}}
        client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3},
                                                 "contentChanges": [{"range": good_range, "text": "2"}]})
        _hover_answered(client)
        assert not served.server.documents.in_sync(uri)  # an incremental change cannot bring it back
        client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 4},
                                                 "contentChanges": [{"text": "x = 3\n"}]})
        _hover_answered(client)
        assert served.server.documents.get(uri).text == "x = 3\n"  # the whole text: in sync again
    finally:
        served.stop()


# -- 7. framing: bounded, resynchronising, never deaf ---------------------------------------------


GARBAGE = {
    "50 GB length": b"Content-Length: 50000000000\r\n\r\n" + b"x" * 4096,
    "length of 5000 digits": b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n{}",
    "length not a number": b"Content-Length: twelve\r\n\r\n{\"jsonrpc\": \"2.0\"}",
    "negative length": b"Content-Length: -5\r\n\r\n",
    "no length": b"Content-Type: application/vscode-jsonrpc\r\n\r\n{}",
    "random bytes": bytes(random.Random(21).randrange(256) for _ in range(20000)),
    "line without end": b"A" * 100_000,
    "length too short": b"Content-Length: 3\r\n\r\n{\"jsonrpc\": \"2.0\", \"id\": 1}",
    "length too long": b"Content-Length: 90\r\n\r\n{}",
    "body not JSON": b"Content-Length: 4\r\n\r\n\xff\xfe\x00{",
    "nested 100000 deep": b"Content-Length: 100000\r\n\r\n" + b"[" * 100_000,
    "a JSON list": frame([1, 2, 3]),
    "a bare CR": b"Content-Length: 2\r{}",
}


@pytest.mark.parametrize("garbage", list(GARBAGE.values()), ids=list(GARBAGE))
def test_after_garbage_the_next_request_is_answered(server, garbage):
    process, client = server
    client.send(garbage)
    _hover_answered(client)
    assert process.alive()


def test_lf_only_line_endings_are_read(server):
    process, client = server
    msg_id = client.new_id()
    client.send(request_bytes(msg_id, "textDocument/hover", hover_params(), eol=b"\n"))
    assert client.answer(msg_id)["error"]["code"] == METHOD_NOT_FOUND


def test_an_over_long_length_is_refused_with_a_reason_and_nothing_buffered(server):
    process, client = server
    client.send(b"Content-Length: 50000000000\r\n\r\n" + b"{" * 1_000_000)  # a megabyte of the 50 GB it promised
    _hover_answered(client)
    assert process.wait_for_stderr("50000000000 bytes is over the limit of 67108864 bytes")
    assert any("over the limit" in text for text in client.logged("50000000000"))
    rss_kib = int(next(line.split()[1] for line in open(f"/proc/{process.process.pid}/status") if line.startswith("VmRSS")))
    assert rss_kib < 1 << 20, f"the server holds {rss_kib} KiB"


def test_the_decoder_reads_the_same_in_any_chunks():
    stream = b"".join(GARBAGE.values()) + request_bytes(1, "shutdown") + request_bytes(2, "shutdown", eol=b"\n")
    whole = FrameDecoder().feed(stream)
    for size in (1, 3, 4096):
        decoder, pieces = FrameDecoder(), []
        for start in range(0, len(stream), size):
            pieces += decoder.feed(stream[start:start + size])
        assert pieces == whole
    messages = [m for m in whole if not isinstance(m, Problem)]
    assert messages[-2:] == [{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}, {"jsonrpc": "2.0", "id": 2, "method": "shutdown"}]


def test_a_bare_carriage_return_inside_a_header_line_does_not_hide_the_next_header():
    # Found by the framing fuzz: "Content-Type: 0\r" then the real header read as one line, whose
    # value was ignored, so the blank line after it closed the block with the garbage's length 0.
    garbage = b"Content-Length: 0\r\n" * 3 + b"Content-Type: 0\r"
    messages = [m for m in FrameDecoder().feed(garbage + request_bytes(1, "shutdown")) if not isinstance(m, Problem)]
    assert messages == [{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}]


# -- 8. TCP: off loopback only with a token, and the token before anything else ---------------


def test_tcp_off_loopback_without_a_token_is_refused(capsys, tmp_path):
    assert main(["lsp", "--tcp", "0.0.0.0:2087"]) == 2
    err = capsys.readouterr().err
    assert "not a loopback address" in err and "--tcp-token-file" in err
    assert main(["lsp", "--tcp-token-file", str(tmp_path / "token")]) == 2
    assert "--tcp-token-file needs --tcp" in capsys.readouterr().err


def test_tcp_with_a_token_admits_only_a_client_that_shows_it(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    token_file.chmod(0o600)
    port = free_port()
    process = ServerProcess("--tcp", f"0.0.0.0:{port}", "--tcp-token-file", str(token_file))
    try:
        stranger = tcp_client(port)
        early = stranger.request("textDocument/hover", hover_params())
        assert early["error"]["code"] == SERVER_NOT_INITIALIZED, early
        for options in (NO_MODEL, {**NO_MODEL, "token": "guess"}, {**NO_MODEL, "token": 12}):
            refused = stranger.request("initialize", {"processId": None, "capabilities": {}, "initializationOptions": options})
            assert refused["error"]["code"] == INVALID_REQUEST and "token" in refused["error"]["message"], refused
            later = stranger.request("textDocument/hover", hover_params())
            assert later["error"]["code"] == SERVER_NOT_INITIALIZED, later
        stranger.close()  # a client that never showed the token does not stop the server

        editor = tcp_client(port)
        init = editor.request("initialize", {"processId": None, "capabilities": {},
                                             "initializationOptions": {**NO_MODEL, "token": "s3cret-token"}})
        assert "capabilities" in init["result"], init  # and the token is not taken for a setting
        assert editor.request("textDocument/hover", hover_params())["error"]["code"] == METHOD_NOT_FOUND
        assert editor.request("shutdown")["result"] is None
        editor.close()
        process.process.wait(timeout=10)  # the admitted client's session ended: so does the server
    finally:
        process.stop()


def test_tcp_on_loopback_needs_no_token():
    port = free_port()
    process = ServerProcess("--tcp", f"127.0.0.1:{port}")
    try:
        client = tcp_client(port)
        init = client.request("initialize", {"processId": None, "capabilities": {}, "initializationOptions": NO_MODEL})
        assert "capabilities" in init["result"], init
        client.close()
    finally:
        process.stop()


# -- fuzz: bounded, one server for all examples ---------------------------------------------------


EOLS = st.sampled_from([b"\r\n", b"\n", b"\r"])
SMALL_LENGTH = st.integers(0, 64).map(lambda n: str(n).encode())  # below the request's own size: never waits past it
HUGE_LENGTH = st.integers(MAX_MESSAGE_BYTES + 1, 10**30).map(lambda n: str(n).encode())
NOT_A_NUMBER = st.text(max_size=12).map(lambda t: t.encode()).filter(lambda b: not b.strip().isdigit() and b"\n" not in b)
HEADER = st.builds(lambda name, value, eol: name + b": " + value + eol,
                   st.sampled_from([b"Content-Length", b"content-length", b"Content-Type", b"X"]),
                   st.one_of(SMALL_LENGTH, HUGE_LENGTH, NOT_A_NUMBER), EOLS)
PIECE = st.one_of(HEADER, EOLS, st.binary(max_size=200), st.sampled_from([b"{", b"}", b'{"jsonrpc": "2.0"}']))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(PIECE, max_size=8))
def test_fuzz_framing_garbage_then_a_request(server, pieces):
    process, client = server
    garbage = b"".join(pieces)
    _SENT.append(garbage)
    client.send(garbage)
    try:
        _hover_answered(client)
    except AssertionError as failure:
        # The server is shared by every example, so a failure may need the examples before it
        # too: all of them, oldest first, with the server's last words, make it replayable.
        sent = "\n".join(repr(b) for b in _SENT)
        raise AssertionError(f"{failure}\ngarbage sent to this server so far, oldest first:\n{sent}\n"
                             f"server stderr (last 40 lines):\n" + "\n".join(process.stderr_lines[-40:])) from None
    assert process.alive()


_SENT: list[bytes] = []  # every example's garbage, in order (one server for the module)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)
WHERE = st.sampled_from(["params", "position", "line", "character", "textDocument", "uri", "context"])


def _substituted(where: str, value) -> dict | object:
    params = hover_params(line=1, character=2)
    if where == "params":
        return value
    if where in ("position", "textDocument", "context"):
        params[where] = value
    elif where == "uri":
        params["textDocument"]["uri"] = value
    else:
        params["position"][where] = value
    return params


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["textDocument/hover", "textDocument/completion"]), where=WHERE, value=JSON)
def test_fuzz_params_every_request_gets_exactly_one_answer(server, method, where, value):
    process, client = server
    msg_id = client.new_id()
    client.send(frame({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": _substituted(where, value)}))
    answer = client.answer(msg_id)
    assert ("result" in answer) != ("error" in answer), answer
    if "error" in answer:
        assert answer["error"]["code"] in (INVALID_PARAMS, METHOD_NOT_FOUND), answer
    _hover_answered(client)  # and the stream goes on; by now any second answer to msg_id would have come
    assert client.answers[msg_id] == 1
