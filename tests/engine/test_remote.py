"""Remote backends against real servers: llama-cpp-python's OpenAI server (`make test-peers`)
and loopcoder's own HTTP API, through the same editor path the LSP server runs."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import threading
import time

import pytest

from loopcoder.engine.errors import ConstrainedDecodingError, EngineUnavailableError, InvalidRequestError
from loopcoder.engine.loader import default_model_path, load_tokenizer
from loopcoder.engine.serving.remote import OpenAIBackend
from loopcoder.engine.sampling import DedentStop, FinishReason, SamplingParams
from loopcoder.lsp.features.completion import CompletionOptions, complete

pytestmark = pytest.mark.slow

ADD = 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n    '


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, log_path, timeout_s: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("sse_starlette") is None:
        pytest.skip("llama-cpp-python[server] is not installed (make test-peers installs it)")
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log_path, "wb") as log:  # a file, not a pipe: llama.cpp logs megabytes
        process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()),
                                    "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"],
                                   stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url, process, log_path)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def test_llama_cpp_server_through_the_editor_path(llama_server, tokenizer):
    backend = OpenAIBackend(llama_server, tokenizer)  # no --model: the first one the server lists
    assert backend.model_name.endswith(".gguf")
    completion = complete(backend, "add.py", ADD, len(ADD), CompletionOptions(max_new_tokens=16))
    # Token healing over HTTP (the server's top log-probabilities) gives the body, not a Markdown fence.
    assert completion.text == "return a + b", completion.result.text
    assert backend.text_prompts  # llama-cpp-python refuses token-id prompts: it was sent text


def test_llama_cpp_server_streams_stops_and_cancels(llama_server, tokenizer):
    backend = OpenAIBackend(llama_server, tokenizer)
    ids = tokenizer.encode("def fib(n):")
    chunks: list[str] = []
    result = backend.generate_for("fib", ids, SamplingParams(max_new_tokens=20), on_token=lambda t, s: chunks.append(s))
    assert "".join(chunks) == result.text and result.finish_reason is FinishReason.LENGTH
    assert result.usage.prompt_tokens > 0 and result.usage.generated_tokens == 20
    cut = backend.generate_for("fib", ids, SamplingParams(max_new_tokens=40), stop_when=DedentStop(8, "def fib(n):"))
    assert cut.finish_reason is FinishReason.STOP and result.text.startswith(cut.text) and "return" not in cut.text
    started = threading.Event()
    cancelled = backend.generate_for("long", ids, SamplingParams(max_new_tokens=2000, ignore_eos=True),
                                     on_token=lambda t, s: started.set(), cancelled=started.is_set)
    assert cancelled.finish_reason is FinishReason.CANCELLED and cancelled.usage.generated_tokens < 200
    with pytest.raises(ConstrainedDecodingError, match="did not follow the JSON schema"):
        backend.generate_json("j", ids, {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
                              SamplingParams(max_new_tokens=8))


def test_unreachable_server_and_bad_urls_are_clear_errors(tokenizer):
    with pytest.raises(InvalidRequestError, match="must start with http"):
        OpenAIBackend("localhost:1", tokenizer)
    started = time.monotonic()
    with pytest.raises(EngineUnavailableError, match="cannot reach the remote backend"):
        OpenAIBackend(f"http://127.0.0.1:{free_port()}", tokenizer)
    assert time.monotonic() - started < 10


TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def loopcoder_http(tmp_path_factory):
    """A real `loopcoder engine --http` process with a bearer token."""
    directory = tmp_path_factory.mktemp("http-engine")
    token_file = directory / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    port = free_port()
    log_path = directory / "engine.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "loopcoder.lsp.cli", "engine", "--socket",
                                    str(directory / "engine.sock"), "--threads", "1", "--http", f"127.0.0.1:{port}",
                                    "--http-token-file", str(token_file)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                OpenAIBackend(url, load_tokenizer(), api_key=TOKEN)
                break
            except EngineUnavailableError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log_path.read_text(errors="replace")[-2000:])
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def test_another_loopcoder_engine_as_the_remote_backend(loopcoder_http, tokenizer):
    backend = OpenAIBackend(loopcoder_http, tokenizer, api_key=TOKEN)
    assert backend.native_healing and not backend.text_prompts
    completion = complete(backend, "add.py", ADD, len(ADD), CompletionOptions(max_new_tokens=16))
    assert completion.text == "return a + b", completion.result.text  # healed by the engine at the other end
    ids = tokenizer.encode("def fib(n):")
    chunks: list[str] = []
    result = backend.generate_for("fib", ids, SamplingParams(max_new_tokens=20), on_token=lambda t, s: chunks.append(s))
    assert "".join(chunks) == result.text and result.usage.generated_tokens == 20
    again = backend.generate_for("fib", ids + tokenizer.encode("\n"), SamplingParams(max_new_tokens=4))
    assert again.usage.prompt_tokens == len(ids) + 1
    value, _ = backend.generate_json("j", tokenizer.encode("A JSON object with a name:"),
                                     {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}},
                                      "required": ["name"]})
    assert isinstance(value["name"], str) and len(value["name"]) <= 10
    started = threading.Event()
    cancelled = backend.generate_for("long", ids, SamplingParams(max_new_tokens=4000, ignore_eos=True),
                                     on_token=lambda t, s: started.set(), cancelled=started.is_set)
    assert cancelled.finish_reason is FinishReason.CANCELLED


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "/"])
def test_openai_url_with_or_without_v1(loopcoder_http, tokenizer, suffix):
    """The OpenAI client's `base_url` ends in /v1; our --url takes either form (never /v1/v1/...)."""
    backend = OpenAIBackend(loopcoder_http + suffix, tokenizer, api_key=TOKEN)
    assert backend.url == loopcoder_http
    assert backend.generate_for("v1", tokenizer.encode("x = "), SamplingParams(max_new_tokens=2)).text


def test_remote_errors_name_the_cause(loopcoder_http, tokenizer):
    with pytest.raises(EngineUnavailableError, match="answered 401 .*set the API key"):
        OpenAIBackend(loopcoder_http, tokenizer, api_key="wrong")
    backend = OpenAIBackend(loopcoder_http, tokenizer, api_key=TOKEN)
    with pytest.raises(InvalidRequestError, match="answered 400"):
        backend.generate_for("bad", [10**9], SamplingParams(max_new_tokens=2))
    assert backend.generate_for("ok", tokenizer.encode("x = "), SamplingParams(max_new_tokens=2)).text


def test_tgi_backend_against_the_tgi_routes(loopcoder_http, tokenizer):
    from loopcoder.engine.serving.remote import TGIBackend

    backend = TGIBackend(loopcoder_http, tokenizer, api_key=TOKEN)
    ids = tokenizer.encode("def fib(n):")
    chunks: list[str] = []
    result = backend.generate_for("fib", ids, SamplingParams(max_new_tokens=12), on_token=lambda t, s: chunks.append(s))
    assert "".join(chunks) == result.text and result.finish_reason is FinishReason.LENGTH
    reference = OpenAIBackend(loopcoder_http, tokenizer, api_key=TOKEN).generate_for("fib", ids,
                                                                                     SamplingParams(max_new_tokens=12))
    assert result.text == reference.text  # the same greedy answer through either API


def test_eval_and_the_language_server_run_on_a_remote_backend(loopcoder_http, tmp_path):
    env = {**__import__("os").environ, "LOOPCODER_API_KEY": TOKEN}
    out = tmp_path / "rows.jsonl"
    done = subprocess.run([sys.executable, "-m", "loopcoder.lsp.cli", "eval", "--backend", "openai", "--url",
                           loopcoder_http, "--kinds", "single-line", "--limit", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(out.read_text().splitlines()) == 3 and "single-line" in done.stdout
    source = tmp_path / "add.py"
    source.write_text(ADD + "\n")
    done = subprocess.run([sys.executable, "-m", "loopcoder.lsp.cli", "complete", str(source), "--line", "3", "--col",
                           "5", "--backend", "openai", "--url", loopcoder_http, "--max-tokens", "16"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("return a + b")


async def test_the_language_server_takes_the_remote_backend_from_initialization_options(loopcoder_http, tmp_path):
    import asyncio

    from lsprotocol import types

    from loopcoder.lsp.cli.scripted_client import ScriptedClient

    client = ScriptedClient("remote editor")
    await client.start_io(sys.executable, "-m", "loopcoder.lsp.cli", "lsp")
    try:
        await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), process_id=None,
            initialization_options={"backend": "openai", "url": loopcoder_http, "apiKey": TOKEN, "maxTokens": 16})), 60)
        client.initialized(types.InitializedParams())
        uri = (tmp_path / "add.py").as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=ADD + "\n")))
        result = await asyncio.wait_for(client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=2, character=4),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))), 120)
        items = result.items if isinstance(result, types.InlineCompletionList) else result
        assert items and items[0].insert_text == "return a + b"
        await asyncio.wait_for(client.shutdown_async(None), 20)
        client.exit(None)
    finally:
        if client._server is not None and client._server.returncode is None:
            client._server.kill()
        await client.stop()
