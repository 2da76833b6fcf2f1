"""Faults of the HTTP API (issue 21), on a real `loopcoder engine --http` process.

The daemon serves a small random Llama with the default model's tokenizer and a 131,072-
position context (so the prompt limit is 4 Mi characters, and a legal prompt can take
seconds to tokenize). Clients are real: httpx on HTTP, DaemonClient on the unix socket.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from safetensors.torch import save_file

from loopcoder.engine.loader import load_tokenizer, random_model
from loopcoder.engine.sampling import SamplingParams
from loopcoder.engine.serving.client import DaemonClient
from loopcoder.engine.serving.http.limits import PROMPT_CHARS_PER_TOKEN

from ..engine.daemon_helpers import running_engine
from ..engine.helpers import tiny_config

CONTEXT = 1 << 17
PROMPT_LIMIT = CONTEXT * PROMPT_CHARS_PER_TOKEN
MAX_BODY = 20 << 20  # --http-max-body 20MiB: a 16 MiB prompt gets past the body limit to the prompt limit
QUICK_S = 5.0  # the defect stalled every client 17 to 26 s
CODE = "def f(x): return x + 1; "  # no character JSON escapes: the body is as long as the text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A small random Llama with the default model's tokenizer (chat template included)."""
    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer = load_tokenizer()
    raw = dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=tokenizer.vocab_size,
               hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=CONTEXT, rms_norm_eps=1e-5)
    model = random_model(tiny_config(**{k: v for k, v in raw.items() if k != "architectures"}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path / "model.safetensors")
    (path / "config.json").write_text(json.dumps(raw))
    tokenizer.hf.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token, "chat_template": tokenizer.chat_template}))
    return path


@pytest.fixture(scope="module")
def daemon(model_dir, tmp_path_factory):
    """(process, socket path, HTTP base URL) of a running daemon."""
    port = _free_port()
    with running_engine(tmp_path_factory.mktemp("daemon"), "--model", str(model_dir), "--kv-budget", "8MiB",
                        "--http", f"127.0.0.1:{port}", "--http-max-body", "20MiB") as (process, socket_path):
        yield process, socket_path, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def unix(daemon):
    client = DaemonClient(daemon[1], client_name="fault test")
    yield client
    client.close_connection()


@pytest.fixture(scope="module")
def http(daemon):
    with httpx.Client(base_url=daemon[2], timeout=60) as client:
        yield client


def small_http(http: httpx.Client) -> float:
    """Seconds a one-token completion takes; it must succeed."""
    start = time.perf_counter()
    r = http.post("/v1/completions", json={"prompt": "def add(a, b):", "max_tokens": 1, "temperature": 0})
    assert r.status_code == 200, r.text
    return time.perf_counter() - start


def small_socket(client: DaemonClient) -> float:
    start = time.perf_counter()
    result = client.generate_for("doc", [1, 2, 3], SamplingParams(max_new_tokens=1))
    assert result.usage.generated_tokens == 1
    return time.perf_counter() - start


def refused_prompt_message(response: httpx.Response, path: str) -> str:
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    if path.startswith("/v1/"):
        assert error["type"] == "invalid_request_error" and error["code"] == 400
        return error["message"]
    assert response.json()["error_type"] == "validation"
    return error


# -- one huge prompt freezes nobody ------------------------------------------------------------


TOO_LONG = [("/v1/completions", lambda text: {"prompt": text, "max_tokens": 1}),
            ("/v1/chat/completions", lambda text: {"messages": [{"role": "user", "content": text}]}),
            ("/generate", lambda text: {"inputs": text}),
            ("/", lambda text: {"inputs": text, "stream": True})]


@pytest.mark.parametrize("path, body", TOO_LONG, ids=[p for p, _ in TOO_LONG])
def test_a_prompt_over_the_limit_is_refused_naming_the_limit_and_its_size(http, path, body):
    text = (CODE * (PROMPT_LIMIT // len(CODE) + 1))[:PROMPT_LIMIT + 1]
    start = time.perf_counter()
    message = refused_prompt_message(http.post(path, json=body(text)), path)
    assert time.perf_counter() - start < QUICK_S
    assert f"{PROMPT_LIMIT + 1} characters" in message and f"limit of {PROMPT_LIMIT}" in message, message


def test_a_16_mib_prompt_is_refused_at_once_and_every_client_keeps_being_served(daemon, http, unix):
    process, _, base = daemon
    huge = CODE * ((16 << 20) // len(CODE))
    answers: list[tuple[str, float, httpx.Response]] = []
    done = threading.Event()

    def send_huge() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not done.is_set() or len(answers) < 4:
                path = ("/v1/completions", "/generate")[len(answers) % 2]
                body = {"prompt": huge, "max_tokens": 1} if path.startswith("/v1/") else {"inputs": huge}
                start = time.perf_counter()
                response = client.post(path, json=body)
                answers.append((path, time.perf_counter() - start, response))

    sender = threading.Thread(target=send_huge, name="huge prompts")
    sender.start()
    try:
        time.sleep(0.2)
        waits = [(small_socket(unix), small_http(http)) for _ in range(3)]
    finally:
        done.set()
        sender.join(120)
    assert all(s < QUICK_S and h < QUICK_S for s, h in waits), waits
    for path, seconds, response in answers:
        assert seconds < QUICK_S, (path, seconds)
        assert f"{len(huge)} characters" in refused_prompt_message(response, path)
    assert small_http(http) < QUICK_S and small_socket(unix) < QUICK_S
    assert process.poll() is None


def test_a_long_legal_prompt_is_tokenized_without_stalling_other_clients(daemon, http, unix):
    base = daemon[2]
    long = CODE * ((3 << 20) // len(CODE))  # under the limit; about 3 s of tokenizing here
    answer: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answer.append(
        httpx.post(f"{base}/v1/completions", json={"prompt": long, "max_tokens": 1}, timeout=120)))
    sender.start()
    waits = []
    while sender.is_alive():
        waits.append(max(small_socket(unix), small_http(http)))
    sender.join()
    # It is tokenized (far more tokens than the context holds: the engine refuses it).
    assert "exceeds the model's" in refused_prompt_message(answer[0], "/v1/completions")
    assert len(waits) >= 3 and max(waits) < 1.0, waits


# -- bodies ----------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_while_it_is_read(daemon, http):
    process, _, base = daemon
    r = http.post("/v1/completions", json={"prompt": CODE * ((MAX_BODY + 100) // len(CODE)), "max_tokens": 1})
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error", r.text[:300]
    assert f"limit of {MAX_BODY} bytes" in r.json()["error"]["message"]
    # 1 GiB, chunked (no Content-Length): refused once the limit's worth is in, never buffered whole
    # (uvicorn drops the rest of a body whose answer has gone out).
    before = rss_mib(process.pid)
    chunk = b" " * (1 << 20)

    def gigabyte():
        yield b'{"inputs": "'
        for _ in range(1024):
            yield chunk

    start = time.perf_counter()
    try:
        r = httpx.post(f"{base}/generate", content=gigabyte(), headers={"Content-Type": "application/json"},
                       timeout=60)
        assert r.status_code == 413 and r.json()["error_type"] == "validation", r.text[:300]
        assert f"limit of {MAX_BODY} bytes" in r.json()["error"]
    except httpx.TransportError:
        pass  # the server answered and closed while the client was still sending
    assert time.perf_counter() - start < 30
    assert rss_mib(process.pid) < before + 200
    assert small_http(http) < QUICK_S


@pytest.mark.parametrize("path, kind", [("/generate", "validation"), ("/generate_stream", "validation"),
                                        ("/v1/completions", "invalid_request_error")])
def test_a_wrong_method_is_a_client_error(http, path, kind):
    r = http.get(path)
    assert r.status_code == 405
    body = r.json()
    assert (body["error"]["type"] if path.startswith("/v1/") else body["error_type"]) == kind, body


# -- memory ----------------------------------------------------------------------------------


def test_rss_comes_back_after_a_burst_of_large_bodies(daemon, http):
    process, _, base = daemon
    big = CODE * ((15 << 20) // len(CODE))  # a legal body; its prompt is over the limit (400)
    long = CODE * (250_000 // len(CODE))  # a legal prompt, tokenized; no room in the 8 MiB of KV (503)
    statuses: list[int] = []

    def burst(path: str, body: dict, times: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            statuses.extend(client.post(path, json=body).status_code for _ in range(times))

    def run_burst(times: int) -> None:
        senders = [threading.Thread(target=burst, args=args) for args in [
            ("/v1/completions", {"prompt": big, "max_tokens": 1}, times),
            ("/generate", {"inputs": long}, times),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": long}]}, times)]]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()

    run_burst(1)  # the first of each kind warms what stays (worker threads, the tokenizer's pool)
    time.sleep(2)
    settled = rss_mib(process.pid)
    run_burst(5)
    assert len(statuses) == 18 and set(statuses) <= {400, 503}, statuses
    peak = rss_mib(process.pid)
    deadline = time.monotonic() + 10
    while (now := rss_mib(process.pid)) > settled * 1.1 and time.monotonic() < deadline:
        time.sleep(0.25)
    print(f"RSS: settled {settled:.0f} MiB, after the burst {peak:.0f} MiB, then {now:.0f} MiB")
    assert now <= settled * 1.1, f"RSS {now:.0f} MiB after the burst, {settled:.0f} MiB settled"
    assert small_http(http) < QUICK_S
