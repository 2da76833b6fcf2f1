"""The HTTP API on a real uvicorn server (loopback, a thread of its own) over real engines.

The default model answers the TGI and OpenAI requests; a small random model with the
default model's tokenizer takes schemathesis' property tests of /openapi.json, where
hundreds of requests with random limits must each finish quickly.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import schemathesis
from schemathesis.generation.modes import GenerationMode
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families

from loopcoder.engine.engine import Engine, EngineConfig
from loopcoder.engine.errors import InvalidRequestError
from loopcoder.engine.serving.access import check_bind, parse_address, read_token_file
from loopcoder.engine.serving.http import GRACEFUL_SHUTDOWN_S, MAX_BODY_BYTES, build_app, serve_http
from loopcoder.engine.loader import random_model

from .helpers import tiny_config

MODEL = "smollm2-135m-test"
PROMPT = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
TGI_EXAMPLE = {"inputs": PROMPT, "parameters": {"max_new_tokens": 20, "temperature": 0.5, "top_p": 0.9,
                                                "do_sample": True, "return_full_text": False}}
GREEDY_TGI = {"inputs": PROMPT, "parameters": {"max_new_tokens": 12, "do_sample": False}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(engine, *, token: str | None = None):
    """A real uvicorn server for `engine` on a free loopback port, run by serve_http in a thread."""
    port = _free_port()
    state: dict = {}
    ready = threading.Event()

    async def main() -> None:
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await serve_http(build_app(engine, model_name=MODEL, token=token), "127.0.0.1", port, state["stop"])

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test that waits for the server
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="http-test-server", daemon=True)
    thread.start()
    ready.wait(10)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        assert "error" not in state, f"the server failed: {state.get('error')!r}"
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.05)
    try:
        yield base
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(20)
        assert not thread.is_alive(), "serve_http did not return after stop was set"


def sse_data(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def wait_idle(engine, sessions_before: int, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = engine.stats()
        if stats["running"] == 0 and stats["queue_depth"] == 0 and stats["sessions"] == sessions_before:
            return stats
        assert time.monotonic() < deadline, f"the engine did not go idle: {stats}"
        time.sleep(0.05)


# -- without a model --------------------------------------------------------------------------


def test_check_bind_requires_a_token_off_loopback():
    with pytest.raises(InvalidRequestError, match="not a loopback address"):
        check_bind("0.0.0.0", None)
    with pytest.raises(InvalidRequestError, match="token"):
        check_bind("", None)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, None)
    check_bind("0.0.0.0", "s3cret")


def test_parse_address_and_token_file(tmp_path):
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    assert parse_address("8080") == ("127.0.0.1", 8080)
    for bad in ("host:http", "::1:80", "127.0.0.1:70000"):
        with pytest.raises(InvalidRequestError, match="--http"):
            parse_address(bad)
    token = tmp_path / "token"
    token.write_text("  abc123\n")
    token.chmod(0o600)
    assert read_token_file(token) == "abc123"
    token.write_text("\n")
    with pytest.raises(InvalidRequestError, match="empty"):
        read_token_file(token)
    with pytest.raises(InvalidRequestError, match="cannot read"):
        read_token_file(tmp_path / "missing")


# -- the default model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(default_engine):
    with serving(default_engine) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=120) as c:
        yield c


@pytest.mark.slow
def test_tgi_example_request(client):
    r = client.post("/generate", json=TGI_EXAMPLE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"generated_text"} and isinstance(body["generated_text"], str)


@pytest.mark.slow
def test_tgi_greedy_full_text_details_and_compat_route(client):
    first = client.post("/generate", json=GREEDY_TGI).json()["generated_text"]
    assert first and client.post("/generate", json=GREEDY_TGI).json()["generated_text"] == first
    full = client.post("/generate", json={**GREEDY_TGI, "parameters": {**GREEDY_TGI["parameters"],
                                                                        "return_full_text": True}}).json()
    assert full["generated_text"] == PROMPT + first
    detailed = client.post("/generate", json={**GREEDY_TGI, "parameters": {**GREEDY_TGI["parameters"],
                                                                            "details": True}}).json()
    details = detailed["details"]
    assert details["finish_reason"] in ("length", "eos_token") and details["seed"] is None
    assert details["generated_tokens"] == len(details["tokens"])
    assert "".join(t["text"] for t in details["tokens"]) == first
    # huggingface_hub's InferenceClient posts to /: a one-element list, or a stream.
    assert client.post("/", json=GREEDY_TGI).json() == [{"generated_text": first}]
    with client.stream("POST", "/", json={**GREEDY_TGI, "stream": True}) as r:
        assert json.loads(sse_data(r)[-1])["generated_text"] == first


@pytest.mark.slow
def test_generate_stream_is_tgi_shaped_and_matches_generate(client):
    expected = client.post("/generate", json=GREEDY_TGI).json()["generated_text"]
    with client.stream("POST", "/generate_stream", json=GREEDY_TGI) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(d) for d in sse_data(r)]
    assert events, "no events"
    for event in events:
        assert set(event) >= {"token", "generated_text", "details"}
        assert set(event["token"]) == {"id", "text", "logprob", "special"}
    assert all(e["generated_text"] is None for e in events[:-1])
    assert events[-1]["generated_text"] == expected
    assert "".join(e["token"]["text"] for e in events) == expected
    sampled = {**TGI_EXAMPLE, "parameters": {**TGI_EXAMPLE["parameters"], "seed": 7, "details": True}}
    with client.stream("POST", "/generate_stream", json=sampled) as r:
        last = json.loads(sse_data(r)[-1])
    assert last["details"]["seed"] == 7 and last["details"]["finish_reason"] in ("length", "eos_token")
    again = client.post("/generate", json=sampled).json()
    assert again["generated_text"] == last["generated_text"]  # the same seed samples the same text


@pytest.mark.slow
def test_completions_streamed_and_not_agree(client, default_engine):
    request = {"model": "anything", "prompt": PROMPT, "max_tokens": 12, "temperature": 0}
    r = client.post("/v1/completions", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == MODEL and body["id"].startswith("cmpl-")
    assert isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["finish_reason"] in ("stop", "length") and choice["text"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    with client.stream("POST", "/v1/completions", json={**request, "stream": True,
                                                         "stream_options": {"include_usage": True}}) as r:
        data = sse_data(r)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == choice["text"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == choice["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == usage["completion_tokens"]
    # The same prompt as token ids gives the same text; its K/V come from the prefix cache.
    ids = default_engine.tokenizer.encode(PROMPT, add_special_tokens=True)
    by_ids = client.post("/v1/completions", json={**request, "prompt": ids}).json()
    assert by_ids["choices"][0]["text"] == choice["text"]
    assert by_ids["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


@pytest.mark.slow
def test_a_vanishing_temperature_is_greedy(client):
    greedy = {"prompt": PROMPT, "max_tokens": 6, "temperature": 0}
    expected = client.post("/v1/completions", json=greedy).json()["choices"][0]["text"]
    for temperature in (1e-300, 1e-6):
        r = client.post("/v1/completions", json={**greedy, "temperature": temperature})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == expected


@pytest.mark.slow
def test_chat_streamed_and_not_agree(client):
    request = {"messages": [{"role": "system", "content": "You write Python."},
                            {"role": "user", "content": [{"type": "text", "text": "Say hello in Python."}]}],
               "max_tokens": 12, "temperature": 0}
    r = client.post("/v1/chat/completions", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == MODEL and body["id"].startswith("chatcmpl-")
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"]
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as r:
        data = sse_data(r)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == message["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"]


@pytest.mark.slow
def test_concurrent_requests_share_the_engine_and_answer_as_alone(client):
    prompts = [PROMPT, "def add(a, b):\n", "class Stack:\n    def push(self, item):\n"]
    request = {"max_tokens": 10, "temperature": 0, "ignore_eos": True}
    alone = [client.post("/v1/completions", json={**request, "prompt": p}).json()["choices"][0]["text"]
             for p in prompts]
    together: list = [None] * len(prompts)

    def ask(i: int) -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=120) as c:
            together[i] = c.post("/v1/completions", json={**request, "prompt": prompts[i]}).json()["choices"][0]["text"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == alone


@pytest.mark.slow
def test_stopping_the_server_cuts_open_streams_and_frees_their_work(default_engine):
    sessions = default_engine.stats()["sessions"]
    long = {"prompt": PROMPT, "max_tokens": 4000, "temperature": 0, "ignore_eos": True, "stream": True}
    seen = threading.Event()

    def stream(base: str) -> None:
        try:
            with httpx.stream("POST", f"{base}/v1/completions", json=long, timeout=60) as r:
                for line in r.iter_lines():
                    seen.set()
        except httpx.HTTPError:
            pass  # the server cut the stream

    with serving(default_engine) as base:
        reader = threading.Thread(target=stream, args=(base,))
        reader.start()
        assert seen.wait(30)
        started = time.monotonic()
    # serving() returned: serve_http ended with the stream still open, after the grace period.
    assert time.monotonic() - started < GRACEFUL_SHUTDOWN_S + 10
    reader.join(10)
    assert not reader.is_alive()
    wait_idle(default_engine, sessions)


@pytest.mark.slow
def test_models_health_schema_and_metrics(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == MODEL
    assert models["data"][0]["max_model_len"] == 8192
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    schema = client.get("/openapi.json").json()
    assert {"/generate", "/generate_stream", "/v1/completions", "/v1/chat/completions"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    client.post("/generate", json=GREEDY_TGI).raise_for_status()
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {s.name: s.value for family in text_string_to_metric_families(r.text) for s in family.samples}
    for name in ("loopcoder_time_to_first_token_seconds_count", "loopcoder_inter_token_latency_seconds_count",
                 "loopcoder_queue_depth", "loopcoder_running_requests", "loopcoder_warm_documents",
                 "loopcoder_kv_cache_used_bytes", "loopcoder_kv_cache_total_bytes",
                 "loopcoder_prefix_cache_hit_rate", "loopcoder_prefix_cache_hits_total",
                 "loopcoder_requests_total"):
        assert name in samples, name
    assert samples["loopcoder_time_to_first_token_seconds_count"] >= 1
    assert samples["loopcoder_inter_token_latency_seconds_count"] >= 1
    assert samples["loopcoder_kv_cache_total_bytes"] > 0


@pytest.mark.slow
def test_token_is_required_when_configured(default_engine):
    with serving(default_engine, token="s3cret-token") as base:
        assert httpx.get(f"{base}/health").status_code == 200  # open without the token
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
            r = httpx.get(f"{base}/v1/models", headers=headers)
            assert r.status_code == 401 and "bearer token" in r.json()["error"]["message"]
        r = httpx.post(f"{base}/generate", json=GREEDY_TGI)
        assert r.status_code == 401 and r.json()["error_type"] == "authentication"
        assert httpx.get(f"{base}/metrics").status_code == 401
        assert httpx.get(f"{base}/openapi.json").status_code == 401
        auth = {"Authorization": "Bearer s3cret-token"}
        assert httpx.get(f"{base}/v1/models", headers=auth).status_code == 200
        schema = httpx.get(f"{base}/openapi.json", headers=auth).json()
        assert "HTTPBearer" in schema["components"]["securitySchemes"]


BAD_REQUESTS = [
    # (path, body or raw bytes, status, words the message must contain)
    ("/v1/completions", b'{"prompt": "x", "max_tokens": ', 422, ["not valid JSON"]),
    ("/generate", b"inputs=hello", 422, ["JSON object"]),
    ("/v1/completions", {"prompt": "x", "max_tokens": "many"}, 422, ["max_tokens"]),
    ("/generate", {"inputs": 5}, 422, ["inputs"]),
    ("/generate", {"inputs": "x", "parameters": {"top_p": 1.5}}, 422, ["parameters.top_p"]),
    ("/generate", {"inputs": "x", "parameters": {"repetition_penalty": 1.3}}, 422, ["repetition_penalty", "not supported"]),
    ("/v1/completions", {"prompt": "x", "n": 2}, 422, ["n=2", "not supported"]),
    ("/v1/completions", {"prompt": "x", "max_tokens": -5}, 422, ["max_tokens"]),
    ("/v1/completions", {"prompt": "x", "echo": True}, 422, ["echo"]),
    ("/v1/completions", {"prompt": ["a", "b"]}, 422, ["batch"]),
    ("/v1/completions", {"prompt": [1, 2, 10 ** 9]}, 400, ["token id 1000000000", "out of range"]),
    ("/v1/completions", {"prompt": [1, 2, 10 ** 9], "stream": True}, 400, ["out of range"]),
    ("/v1/completions", {"prompt": "x", "max_tokens": 9000}, 400, ["exceeds"]),
    ("/v1/chat/completions", {"messages": []}, 422, ["messages"]),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, 422, ["messages[0].role"]),
    ("/generate", {"inputs": ""}, 422, ["inputs"]),
    ("/v1/completions", {"prompt": []}, 422, ["prompt"]),
    ("/v1/nothing", {}, 404, ["Not Found"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("path, body, status, words", BAD_REQUESTS, ids=[f"{p} {s} {w[0]}" for p, _, s, w in BAD_REQUESTS])
def test_bad_input_gets_a_json_error_and_the_server_keeps_serving(client, path, body, status, words):
    if isinstance(body, bytes):
        r = client.post(path, content=body, headers={"Content-Type": "application/json"
                                                     if body.startswith(b"{") else "application/x-www-form-urlencoded"})
    else:
        r = client.post(path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    message = error["message"] if path.startswith("/v1/") else error
    for word in words:
        assert word in message, message
    assert "Traceback" not in r.text
    ok = client.post("/v1/completions", json={"prompt": [1, 2, 3], "max_tokens": 2, "temperature": 0})
    assert ok.status_code == 200


@pytest.mark.slow
def test_an_oversized_body_is_refused(client):
    big = json.dumps({"inputs": "x" * (MAX_BODY_BYTES + 1)}).encode()
    r = client.post("/generate", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error_type"] == "validation"
    # Without a Content-Length (chunked), the bytes are counted as they come.
    chunks = (big[i:i + (1 << 20)] for i in range(0, len(big), 1 << 20))
    r = client.post("/v1/completions", content=chunks, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "error" in r.json()
    assert client.get("/health").status_code == 200


@pytest.mark.slow
def test_a_client_leaving_mid_stream_cancels_its_generation(client, default_engine):
    sessions = default_engine.stats()["sessions"]
    long = {"prompt": PROMPT, "max_tokens": 4000, "temperature": 0, "ignore_eos": True, "stream": True}
    with client.stream("POST", "/v1/completions", json=long) as r:
        lines = r.iter_lines()
        seen = [line for line, _ in zip(lines, range(6)) if line.startswith("data: ")]
        assert len(seen) >= 2 and default_engine.stats()["running"] == 1
    # Leaving the block closes the connection with 4000 tokens still to go.
    wait_idle(default_engine, sessions)
    with client.stream("POST", "/generate_stream",
                       json={"inputs": PROMPT, "parameters": {"max_new_tokens": 4000}}) as r:
        next(line for line in r.iter_lines() if line.startswith("data: "))
    wait_idle(default_engine, sessions)


@pytest.mark.slow
def test_a_client_leaving_before_the_answer_cancels_its_generation(server, default_engine):
    sessions = default_engine.stats()["sessions"]
    long = {"prompt": PROMPT, "max_tokens": 4000, "temperature": 0, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server}/v1/completions", json=long, timeout=1.0)
    wait_idle(default_engine, sessions)


# -- property tests of the schema, on a small random model ---------------------------------


@pytest.fixture(scope="module")
def small_server(default_engine):
    tokenizer = default_engine.tokenizer
    # The real tokenizer (chat template, special tokens) over a model small enough that any
    # request the schema allows ends fast: 256 positions bound every generation.
    config = tiny_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=256)
    engine = Engine(random_model(config, seed=0), tokenizer, EngineConfig(kv_budget_bytes=1 << 22, block_size=16))
    with serving(engine) as base:
        yield base


OPERATIONS = [("POST", "/generate"), ("POST", "/generate_stream"), ("POST", "/"), ("POST", "/v1/completions"),
              ("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/health"), ("GET", "/metrics")]


CASES = [(m, p, mode) for m, p in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if m == "POST" or mode is GenerationMode.POSITIVE]  # a GET without parameters has no invalid form


@pytest.mark.slow
@pytest.mark.parametrize("method, path, mode", CASES, ids=[f"{m} {p} {mode}" for m, p, mode in CASES])
def test_openapi_schema_holds_for_generated_requests(small_server, method, path, mode):
    # schemathesis' own pytest loader (schemathesis.pytest.from_fixture) fails under pytest 9
    # (it sets Function._nodeid), so each operation's cases come from its Hypothesis strategy.
    schema = schemathesis.openapi.from_url(f"{small_server}/openapi.json")
    assert sorted((o.ok().method.upper(), o.ok().path) for o in schema.get_all_operations()) == sorted(OPERATIONS)
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def holds(case):
        # Every check but "a schema-valid request is accepted": a prompt longer than the
        # model's context is valid JSON yet must get 400, as in every OpenAI-style server.
        case.call_and_validate(timeout=60, excluded_checks=[schemathesis.checks.positive_data_acceptance])

    holds()
