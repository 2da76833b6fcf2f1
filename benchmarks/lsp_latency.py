"""LSP latency benchmark: keystroke -> inline completion, timed on the editor's side of the wire.

The real server (`python -m loopcoder.lsp.cli lsp`; the embedded default model unless
--model) runs as a subprocess over stdio, driven by pygls's `LanguageClient` as an editor
drives it. Each document is about N tokens (--sizes) of the running Python's own stdlib
(`common.stdlib_source`: argparse.py first, cut after a whole statement). Before the last
simple statement of a function body, near the end of the file, the user has opened a new
line and typed `result = `; from there they type new code of their own (SNIPPET: the model
may know argparse.py by heart, not this), one keystroke at a time, Enter with the next
line's indentation being one keystroke. The cursor always ends a partly typed line.

Per document it times, from the first message sent to the response received:
  * first after open: didOpen, then at once textDocument/inlineCompletion. The server's
    pre-warm has just begun and the request supersedes it, so this prefills the prompt;
  * keystrokes: didChange (one incremental insertion, the next version) and at once
    inlineCompletion (triggerKind Automatic) at the new cursor; the next keystroke waits
    for the answer;
  * bursts: --burst-length keystrokes sent back to back, each with its request, as a
    fast typist makes them. The server answers the superseded requests with null; the
    clock runs from the burst's last didChange to the last answer.

Two servers run one after the other, each with initializationOptions maxTokens (16),
temperature 0, contextTokens, and
  * warm: cache true, prewarm true (the defaults): the document's K/V stays between
    requests, so a keystroke computes the one or two tokens it changed;
  * baseline: cache false, prewarm false: the document's K/V is dropped before every
    request, so every prompt is computed from scratch, as a stateless server does.
An automatic request completes one line, so an answer holds at most maxTokens tokens and
often fewer: the latencies include decoding, as the editor sees them. A keystroke that
types what the previous suggestion began with is counted as `along the suggestion`: with
cache on, the server answers those from the suggestion it remembers, without the model,
so the table also gives the median of the other keystrokes, where the model ran.

The server bounds the prompt to contextTokens of text before the cursor, so a 16K-token
file's prompt is shorter than the file: the table gives both. Prompt tokens are counted
here with the server's own `build_prompt` on the model's tokenizer (no weights loaded).

Run: python benchmarks/lsp_latency.py [--quick] [--sizes 4096,16384] [--keystrokes N]
     [--device cuda] [--dtype ...] [--quant ...] [--plot-to PNG] [--json-out JSON]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import os
import sys
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lsprotocol import types

from common import (fmt, line_offsets, machine_info, markdown_table, median, new_figure, percentile, save_figure,
                    stdlib_source, write_json)
from loopcoder.engine.config import ModelConfig
from loopcoder.engine.loader import default_model_path
from loopcoder.engine.tokenizer import Tokenizer
from loopcoder.engine.weights.gguf_config import config_from_gguf
from loopcoder.engine.weights.gguf_file import open_gguf, read_gguf_metadata
from loopcoder.lsp.cli.scripted_client import ScriptedClient
from loopcoder.lsp.features.completion import CompletionOptions, build_prompt

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
WARM, BASELINE = "warm (cache on)", "baseline (cache off)"
# What the user types: new code of their own, so the model cannot know it by heart (it may
# well know the stdlib file). At didOpen the first line is typed up to TYPED_AT_OPEN.
SNIPPET = ("result = compute_value(x)\nchecked = validate(result, strict=True)\nif not checked:\n"
           "    raise ValueError(result)\nreturn checked")
TYPED_AT_OPEN = len("result = ")
_T0 = time.perf_counter()


def progress(message: str) -> None:
    """Phase markers on stderr, so stdout stays the report."""
    print(f"[lsp_latency {time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


# -- the documents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptModel:
    """What `build_prompt` reads of an engine, without the weights: its tokenizer and config."""

    tokenizer: Tokenizer
    model_config: ModelConfig


def load_prompt_model(model: str | None) -> PromptModel:
    path = default_model_path() if model is None else Path(model)
    if path.is_dir():
        return PromptModel(Tokenizer.from_pretrained_dir(path), ModelConfig.from_json_file(path / "config.json"))
    reader = open_gguf(path)
    meta = read_gguf_metadata(reader)
    return PromptModel(Tokenizer.from_gguf_metadata(meta), config_from_gguf(meta, reader.tensors))


@dataclass(frozen=True)
class Document:
    name: str
    modules: list[str]  # the stdlib modules it is made of
    text: str  # at didOpen
    cursor: int  # character offset of the cursor at didOpen
    keys: list[str]  # what each keystroke inserts, in typing order
    file_tokens: int
    prompt_tokens: list[int]  # the prompt at the cursor after 0, 1, 2, ... keystrokes


def body_statement_starts(source: str) -> list[tuple[int, str]]:
    """(offset of the line, indentation) of each simple statement that opens its line in a function body."""
    line_starts = line_offsets(source)
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for stmt in node.body:
            simple = isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return)) or (
                isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call))  # not a docstring
            line = line_starts[stmt.lineno - 1]
            indent = source[line : line + stmt.col_offset]  # ast columns count UTF-8 bytes: ASCII indents only
            if simple and indent.isascii() and not indent.strip():
                found.add((line, indent))
    return sorted(found)


def keystrokes_of(text: str) -> list[str]:
    """The keystrokes that type `text`: a character each, Enter with the next line's indentation as one."""
    keys: list[str] = []
    i = 0
    while i < len(text):
        end = i + 1
        if text[i] == "\n":
            while end < len(text) and text[end] in " \t":
                end += 1
        keys.append(text[i:end])
        i = end
    return keys


def make_document(model: PromptModel, target_tokens: int, typed: int, options: CompletionOptions) -> Document:
    """About `target_tokens` tokens of stdlib code; the user has begun a new line before the last
    simple statement of a function body, has typed SNIPPET[:TYPED_AT_OPEN] and will type `typed` keystrokes more."""
    count = lambda text: len(model.tokenizer.encode(text))  # noqa: E731
    source, modules = stdlib_source(target_tokens, count)
    starts = body_statement_starts(source)
    if not starts:
        raise SystemExit(f"no function body in {target_tokens} tokens of {', '.join(modules)}: try a larger --sizes")
    line_start, indent = starts[-1]
    snippet = "\n".join(indent + line for line in SNIPPET.split("\n"))
    opened = len(indent) + TYPED_AT_OPEN
    keys = keystrokes_of(snippet[opened:])
    if typed > len(keys):
        raise SystemExit(f"the typed snippet has {len(keys)} keystrokes after the open, {typed} were asked for "
                         "(keystrokes + bursts x burst length)")
    keys = keys[:typed]
    text = source[:line_start] + snippet[:opened] + "\n" + source[line_start:]
    cursor = line_start + opened
    prompts, prefix, suffix = [], text[:cursor], text[cursor:]
    for key in ["", *keys]:
        prefix += key
        prompts.append(len(build_prompt(model, prefix, suffix, options)))
    name = f"{modules[0]}-{target_tokens}.py"
    return Document(name, modules, text, cursor, keys, count(text), prompts)


# -- the client ---------------------------------------------------------------------------------


class ServerFailed(RuntimeError):
    """The server did not start, answer in time, or stay alive; the message carries its stderr."""


class BenchClient(ScriptedClient):
    """pygls's client, keeping the server's stderr and log messages: they explain a failure."""

    def __init__(self) -> None:
        super().__init__("loopcoder-lsp-latency", keep_lines=200)
        self.log_lines: deque[str] = deque(maxlen=50)
        self.feature(types.WINDOW_LOG_MESSAGE)(lambda params: self.log_lines.append(params.message))
        self.feature(types.WINDOW_SHOW_MESSAGE)(lambda params: self.log_lines.append(params.message))

    async def close(self, grace_s: float = 10.0) -> None:
        """Shut the server down politely, else terminate it, else kill it; idempotent."""
        server = self._server
        if server is not None and server.returncode is None:
            try:
                await asyncio.wait_for(self.shutdown_async(None), grace_s)
                self.exit(None)
                await asyncio.wait_for(server.wait(), grace_s)
            except Exception as error:  # noqa: BLE001 — reported, then the process is ended by force
                progress(f"server {server.pid} did not shut down ({error!r}); terminating it")
            await _end_process(server, grace_s)
        if self._drain is not None:
            await asyncio.wait_for(self._drain, grace_s)
        if not self.stopped:
            await asyncio.wait_for(self.stop(), grace_s)

    def failure_report(self) -> str:
        stderr = "\n".join(self.stderr) or "(nothing)"
        logs = "\n".join(self.log_lines)
        return f"--- server stderr (last {len(self.stderr)} lines) ---\n{stderr}" + (
            f"\n--- server log messages ---\n{logs}" if logs else "")


async def _end_process(server: asyncio.subprocess.Process, grace_s: float) -> None:
    for stop in (server.terminate, server.kill):
        if server.returncode is not None:
            return
        try:
            stop()
            await asyncio.wait_for(server.wait(), grace_s)
        except ProcessLookupError:
            return
        except asyncio.TimeoutError:
            continue


def server_command(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "loopcoder.lsp.cli", "lsp", "--device", args.device, "--dtype", args.dtype,
               "--quant", args.quant]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.model:
        command += ["--model", args.model]
    return command


@asynccontextmanager
async def running_server(command: list[str], options: dict, timeout_s: float):
    """A started, initialized server; a failure anywhere inside becomes a `ServerFailed` with its stderr."""
    client = BenchClient()
    await client.start_io(*command)
    try:
        capabilities = types.ClientCapabilities(
            general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
            text_document=types.TextDocumentClientCapabilities(
                inline_completion=types.InlineCompletionClientCapabilities()))
        init = await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            capabilities=capabilities, process_id=os.getpid(), initialization_options=options)), timeout_s)
        client.initialized(types.InitializedParams())
        yield client, init
    except Exception as error:
        await client.close()
        raise ServerFailed(f"the LSP server ({' '.join(command)}) failed: {error!r}\n{client.failure_report()}") from error
    finally:
        await client.close()


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def lsp_position(text: str, offset: int) -> types.Position:
    """The LSP (UTF-16) position of character `offset` in `text`."""
    line_start = text.rfind("\n", 0, offset) + 1
    return types.Position(line=text.count("\n", 0, offset), character=_utf16_len(text[line_start:offset]))


class OpenDocument:
    """A document open in the server, with the editor's version and cursor."""

    def __init__(self, client: BenchClient, uri: str, text: str, cursor: int) -> None:
        self.client, self.uri, self.version = client, uri, 1
        self.position = lsp_position(text, cursor)
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))

    def type(self, key: str) -> None:
        """didChange: `key` inserted at the cursor, which moves past it."""
        self.version += 1
        here = types.Range(start=self.position, end=self.position)
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            content_changes=[types.TextDocumentContentChangePartial(range=here, text=key)]))
        if "\n" in key:
            self.position = types.Position(self.position.line + key.count("\n"), _utf16_len(key.rsplit("\n", 1)[1]))
        else:
            self.position = types.Position(self.position.line, self.position.character + _utf16_len(key))

    def ask(self) -> asyncio.Future:
        """inlineCompletion (Automatic) at the cursor, sent now; the future resolves to the answer."""
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri), position=self.position,
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))
        return self.client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params)

    def close(self) -> None:
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri)))


def suggestion_of(answer) -> str | None:
    """The first item's text of an inlineCompletion answer; None for no suggestion."""
    items = answer.items if isinstance(answer, types.InlineCompletionList) else answer
    if not items:
        return None
    text = items[0].insert_text
    return text if isinstance(text, str) else text.value


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Keystroke:
    number: int  # 1-based, in typing order
    key: str
    ms: float  # didChange sent -> answer received
    prompt_tokens: int
    suggestion: str | None
    along_suggestion: bool  # the previous suggestion began with this key: served without the model, cache on


@dataclass
class Burst:
    keys: str
    ms: float  # last didChange sent -> last answer received
    from_first_ms: float  # first didChange sent -> last answer received
    answered: int  # requests of the burst answered with a suggestion (superseded ones get null)
    suggestion: str | None


@dataclass
class DocumentRun:
    open_ms: float  # didOpen sent -> first answer received
    open_suggestion: str | None
    keystrokes: list[Keystroke] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)


async def answer(future: asyncio.Future, timeout_s: float, what: str):
    """The answer `future` resolves to; a TimeoutError after `timeout_s`."""
    try:
        # Shielded: pygls fails on an answer that arrives for a cancelled request future.
        return await asyncio.wait_for(asyncio.shield(future), timeout_s)
    except asyncio.TimeoutError:
        future.add_done_callback(lambda late: late.cancelled() or late.exception())  # a late answer is not an error
        raise TimeoutError(f"no answer within {timeout_s:g} s to {what}") from None


async def wait_for_model(client: BenchClient, timeout_s: float) -> float:
    """Seconds until a first completion answers: the model is loaded and has run once."""
    start = time.perf_counter()
    text = "def add(a, b):\n    return \n"
    doc = OpenDocument(client, "file:///bench/warm_up.py", text, text.index("\n", 15))
    await answer(doc.ask(), timeout_s, "the first request (model loading; --start-timeout)")
    doc.close()
    return time.perf_counter() - start


async def type_one(doc: OpenDocument, key: str, timeout_s: float) -> tuple[float, str | None]:
    start = time.perf_counter()
    doc.type(key)
    suggestion = suggestion_of(await answer(doc.ask(), timeout_s, f"keystroke {key!r} (--timeout)"))
    return (time.perf_counter() - start) * 1e3, suggestion


async def type_burst(doc: OpenDocument, keys: list[str], timeout_s: float) -> Burst:
    first = time.perf_counter()
    pending = []
    for key in keys:
        last = time.perf_counter()
        doc.type(key)
        pending.append(doc.ask())
    answers = [await answer(f, timeout_s, f"the burst {''.join(keys)!r} (--timeout)") for f in pending]
    done = time.perf_counter()
    suggestions = [suggestion_of(a) for a in answers]
    return Burst("".join(keys), (done - last) * 1e3, (done - first) * 1e3,
                 sum(s is not None for s in suggestions), suggestions[-1])


async def measure_document(client: BenchClient, doc: Document, keystrokes: int, bursts: int, burst_length: int,
                           timeout_s: float) -> DocumentRun:
    start = time.perf_counter()
    opened = OpenDocument(client, f"file:///bench/{doc.name}", doc.text, doc.cursor)
    suggestion = suggestion_of(await answer(opened.ask(), timeout_s, "the first request after didOpen (--timeout)"))
    run = DocumentRun((time.perf_counter() - start) * 1e3, suggestion)
    previous = suggestion
    for number, key in enumerate(doc.keys[:keystrokes], 1):
        ms, suggestion = await type_one(opened, key, timeout_s)
        along = bool(previous) and previous.startswith(key)
        run.keystrokes.append(Keystroke(number, key, ms, doc.prompt_tokens[number], suggestion, along))
        previous = suggestion
    for i in range(bursts):
        begin = keystrokes + i * burst_length
        run.bursts.append(await type_burst(opened, doc.keys[begin : begin + burst_length], timeout_s))
    opened.close()
    return run


@dataclass(frozen=True)
class Mode:
    name: str
    cache: bool
    keystrokes: int


async def measure_mode(mode: Mode, docs: list[Document], args: argparse.Namespace) -> tuple[float, dict[int, DocumentRun]]:
    """One server with `mode`'s settings; each document in turn. Returns the model's ready time and the runs by size."""
    options = {"maxTokens": args.max_tokens, "temperature": 0, "contextTokens": args.context_tokens,
               "cache": mode.cache, "prewarm": mode.cache}
    progress(f"{mode.name}: starting the server, loading the model")
    async with running_server(server_command(args), options, args.start_timeout) as (client, _init):
        ready_s = await wait_for_model(client, args.start_timeout)
        runs = {}
        for size, doc in zip(args.sizes, docs):
            progress(f"{mode.name}: {doc.name}, {mode.keystrokes} keystrokes, {args.bursts} bursts")
            runs[size] = await measure_document(client, doc, mode.keystrokes, args.bursts, args.burst_length,
                                                args.timeout)
    return ready_s, runs


# -- report -------------------------------------------------------------------------------------


def summarize(run: DocumentRun) -> dict:
    ms = [k.ms for k in run.keystrokes]
    suggestions = [run.open_suggestion, *(k.suggestion for k in run.keystrokes), *(b.suggestion for b in run.bursts)]
    return {
        "open_ms": run.open_ms,
        "keystrokes": len(ms),
        "p50_ms": median(ms),
        "p90_ms": percentile(ms, 90),
        "other_keys_p50_ms": median([k.ms for k in run.keystrokes if not k.along_suggestion]),
        "along_suggestion": sum(k.along_suggestion for k in run.keystrokes),
        "burst_p50_ms": median([b.ms for b in run.bursts]),
        "prompt_tokens_p50": median([k.prompt_tokens for k in run.keystrokes]),
        "answers": len(suggestions),
        "non_empty": sum(bool(s) for s in suggestions),
    }


def results_table(docs: dict[int, Document], summaries: dict[str, dict[int, dict]], burst_length: int) -> str:
    headers = ["file tokens", "prompt tokens", "server", "first after open (ms)", "keystrokes", "p50 (ms)",
               "p90 (ms)", "keys along the suggestion", "p50, other keys (ms)", f"burst of {burst_length}: p50 (ms)",
               "non-empty answers"]
    rows = []
    for size, doc in docs.items():
        for mode, by_size in summaries.items():
            s = by_size[size]
            rows.append([f"{doc.file_tokens:,}", fmt(s["prompt_tokens_p50"]), mode, fmt(s["open_ms"]),
                         str(s["keystrokes"]), fmt(s["p50_ms"]), fmt(s["p90_ms"]), str(s["along_suggestion"]),
                         fmt(s["other_keys_p50_ms"]), fmt(s["burst_p50_ms"]), f"{s['non_empty']}/{s['answers']}"])
    return markdown_table(headers, rows)


def ratios(docs: dict[int, Document], summaries: dict[str, dict[int, dict]]) -> dict[str, float]:
    """baseline / warm per file size: at the median and p90 of every keystroke (what the editor sees),
    and the baseline's median over the warm median of keys off the suggestion (the K/V cache alone)."""
    out = {}
    for size, doc in docs.items():
        warm, base = summaries[WARM][size], summaries[BASELINE][size]
        name = f"{doc.file_tokens:,}-token file, baseline/warm"
        out[f"{name} p50"] = base["p50_ms"] / warm["p50_ms"]
        out[f"{name} p90"] = base["p90_ms"] / warm["p90_ms"]
        out[f"{name} p50, warm keys off the suggestion"] = base["p50_ms"] / warm["other_keys_p50_ms"]
    return out


def baseline_warnings(docs: dict[int, Document], summaries: dict[str, dict[int, dict]]) -> list[str]:
    """With cache off every keystroke computes its whole prompt, as the first request after didOpen
    does; keystrokes much faster than that mean the server reused K/V anyway."""
    out = []
    for size, doc in docs.items():
        s = summaries[BASELINE][size]
        if s["p50_ms"] < 0.5 * s["open_ms"]:
            out.append(f"{doc.name}: cache-off keystrokes (p50 {s['p50_ms']:,.0f} ms) are under half the first request "
                       f"after didOpen ({s['open_ms']:,.0f} ms): the server seems to reuse K/V with cache off, so the "
                       "baseline is not a from-scratch baseline")
    return out


def plot(docs: dict[int, Document], runs: dict[str, dict[int, DocumentRun]], info: dict, paths: list[Path]) -> None:
    fig, ax = new_figure()
    colors = ("tab:blue", "tab:red", "tab:green", "tab:purple")
    for (size, doc), color in zip(docs.items(), colors):
        for mode, style in ((WARM, "o-"), (BASELINE, "x--")):
            run = runs[mode][size]
            x = [0] + [k.number for k in run.keystrokes]
            ax.plot(x, [run.open_ms] + [k.ms for k in run.keystrokes], style, color=color,
                    label=f"{doc.file_tokens:,}-token file ({doc.prompt_tokens[0]:,}-token prompt), {mode}")
            along = [k for k in run.keystrokes if k.along_suggestion]
            ax.scatter([k.number for k in along], [k.ms for k in along], s=120, facecolors="none", edgecolors=color)
    ax.scatter([], [], s=120, facecolors="none", edgecolors="gray", label="ring: key along the previous suggestion")
    ax.set_yscale("log")  # the baseline is many times the warm latency; both must stay readable
    ax.set_xlabel("keystroke (0: first request after didOpen)")
    ax.set_ylabel("didChange -> inlineCompletion answer (ms, log scale)")
    ax.set_title(f"LSP keystroke latency, client side: maxTokens {info['max_tokens']}, one-line automatic completions\n"
                 f"{info['device_name']}, {info['precision']}; torch {info['torch']}, {info['date'][:10]}", fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(fig, paths)


def print_report(info: dict, docs: dict[int, Document], table: str, ratio: dict[str, float], warnings: list[str],
                 runs: dict[str, dict[int, DocumentRun]]) -> None:
    print(f"# LSP latency — {info['date']}")
    print(f"server: {' '.join(info['server_command'][1:])}; device {info['device_name']}; {info['precision']}")
    print(f"CPU: {info['cpu']} ({info['cpu_count']} cores); torch {info['torch']}; Python {info['python']}; "
          f"load average before/after: {info['loadavg_before']:.2f}/{info['loadavg_after']:.2f}")
    print("model ready (server start to first answer): " + ", ".join(f"{m} {s:.1f} s" for m, s in info["ready_s"].items()))
    for doc in docs.values():
        line = doc.text.count("\n", 0, doc.cursor) + 1
        typed = "".join(doc.keys)
        print(f"document {doc.name} ({', '.join(doc.modules)}): {len(doc.text):,} chars, {doc.file_tokens:,} tokens; "
              f"cursor line {line}, prompt {doc.prompt_tokens[0]:,} tokens; types {typed!r}")
    print()
    print(table)
    print()
    for name, value in ratio.items():
        print(f"{name}: {value:.1f}x")
    for warning in warnings:
        print(f"WARNING: {warning}")
    for mode, by_size in runs.items():
        for size, run in by_size.items():
            shown = next((k.suggestion for k in reversed(run.keystrokes) if k.suggestion), run.open_suggestion)
            print(f"last suggestion, {mode}, {docs[size].name}: {shown!r}")


def write_outputs(args: argparse.Namespace, info: dict, docs: dict[int, Document], runs: dict, summaries: dict,
                  table: str, ratio: dict, warnings: list[str]) -> None:
    out_dir = args.out_dir
    plot(docs, runs, info, [out_dir / "lsp_latency.png"] + ([args.plot_to] if args.plot_to else []))
    data = {
        "meta": info,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "documents": {str(size): {k: v for k, v in asdict(doc).items() if k != "text"} | {"chars": len(doc.text)}
                      for size, doc in docs.items()},
        "runs": {mode: {str(size): {"summary": summaries[mode][size]} | asdict(run) for size, run in by_size.items()}
                 for mode, by_size in runs.items()},
        "ratios": ratio,
        "warnings": warnings,
    }
    written = [out_dir / "lsp_latency.json", out_dir / "lsp_latency.png", out_dir / "lsp_latency.md"]
    for path in [out_dir / "lsp_latency.json"] + ([args.json_out] if args.json_out else []):
        write_json(path, data)
    (out_dir / "lsp_latency.md").write_text(table + "\n", encoding="utf-8")
    extra = [p for p in (args.plot_to, args.json_out) if p]
    print("\nwrote " + ", ".join(map(str, written + extra)))


# -- main ---------------------------------------------------------------------------------------


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.device(device))
    return device


async def measure_all(args: argparse.Namespace, docs: list[Document], info: dict) -> dict[str, dict[int, DocumentRun]]:
    runs, info["ready_s"] = {}, {}
    for mode in (Mode(WARM, True, args.keystrokes), Mode(BASELINE, False, args.baseline_keystrokes)):
        info["ready_s"][mode.name], runs[mode.name] = await measure_mode(mode, docs, args)
    return runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="4096,16384", help="document sizes in tokens, comma-separated (default 4096,16384)")
    p.add_argument("--keystrokes", type=int, default=20, help="timed keystrokes per document, warm server (default 20)")
    p.add_argument("--baseline-keystrokes", type=int, default=8,
                   help="timed keystrokes per document, baseline server: each recomputes the prompt (default 8)")
    p.add_argument("--bursts", type=int, default=3, help="bursts per document after the keystrokes (default 3)")
    p.add_argument("--burst-length", type=int, default=4, help="keystrokes sent back to back in a burst (default 4)")
    p.add_argument("--max-tokens", type=int, default=16, help="initializationOptions.maxTokens (default 16)")
    p.add_argument("--context-tokens", type=int, default=6144, help="initializationOptions.contextTokens (default 6144)")
    p.add_argument("--model", default=None, help="server --model (default: the embedded SmolLM2-135M)")
    p.add_argument("--device", default="cpu", help="server --device, e.g. cuda (default cpu)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"), help="server --dtype")
    p.add_argument("--quant", default="auto", choices=("auto", "none", "int8", "int4"), help="server --quant")
    p.add_argument("--threads", type=int, default=None, help="server --threads (default: torch's choice)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for any one answer (default 300)")
    p.add_argument("--start-timeout", type=float, default=600,
                   help="seconds to wait for initialize and for the model to answer once (default 600)")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="JSON, PNG and table go here")
    p.add_argument("--plot-to", type=Path, default=None, help="also write the plot here (e.g. docs/benchmarks/lsp_latency.png)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the raw numbers here")
    p.add_argument("--quick", action="store_true", help="smoke run: one 1K-token file, 3 keystrokes, 1 short burst")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.keystrokes, args.baseline_keystrokes, args.bursts, args.burst_length = "1024", 3, 2, 1, 3
    args.sizes = [int(s) for s in str(args.sizes).split(",")]
    if min(args.sizes) < 1 or min(args.keystrokes, args.baseline_keystrokes, args.burst_length) < 1 or args.bursts < 0:
        p.error("--sizes, the keystroke counts and --burst-length must be positive, --bursts 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info() | {"loadavg_before": os.getloadavg()[0], "server_command": server_command(args),
                             "max_tokens": args.max_tokens, "device_name": device_name(args.device),
                             "precision": f"--dtype {args.dtype} --quant {args.quant}"}
    progress("building the documents")
    model = load_prompt_model(args.model)
    options = CompletionOptions(max_new_tokens=args.max_tokens, prefix_tokens=args.context_tokens, multiline=False)
    typed = max(args.keystrokes, args.baseline_keystrokes) + args.bursts * args.burst_length
    docs = {size: make_document(model, size, typed, options) for size in args.sizes}
    try:
        runs = asyncio.run(measure_all(args, list(docs.values()), info))
    except ServerFailed as error:
        print(f"lsp_latency: {error}", file=sys.stderr)
        return 1
    info["loadavg_after"] = os.getloadavg()[0]
    summaries = {mode: {size: summarize(run) for size, run in by_size.items()} for mode, by_size in runs.items()}
    table = results_table(docs, summaries, args.burst_length)
    ratio, warnings = ratios(docs, summaries), baseline_warnings(docs, summaries)
    print_report(info, docs, table, ratio, warnings, runs)
    write_outputs(args, info, docs, runs, summaries, table, ratio, warnings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
