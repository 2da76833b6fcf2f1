"""`loopcoder demo`: an editor session, scripted. It starts `loopcoder lsp` and drives it over
stdio as an editor does, printing what a user would see:

1. ghost text (textDocument/inlineCompletion) at a cursor in a real file;
2. a review of a Flask handler that builds SQL by string concatenation: the diagnostics
   the server publishes (the model's findings, grounded in ruff and bandit), and the quick
   fixes it offers for them;
3. a Socratic hint (loopcoder.hint) about a slow range-sum function.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types

from loopcoder.engine.errors import InvalidRequestError, LoopcoderError
from loopcoder.engine.serving.client import DaemonClient

from .common import add_model_args
from .scripted_client import ScriptedClient

EXAMPLES = Path("docs/examples")
STEP_TIMEOUT_S = 600


class DemoClient(ScriptedClient):
    """A pygls client that records what the server pushes: diagnostics, messages, progress."""

    def __init__(self) -> None:
        super().__init__("loopcoder-demo")
        self.diagnostics: dict[str, list[types.Diagnostic]] = {}
        self.diagnostics_arrived = asyncio.Event()
        self.messages: list[str] = []

        @self.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
            self.diagnostics[params.uri] = list(params.diagnostics)
            self.diagnostics_arrived.set()

        @self.feature(types.WINDOW_SHOW_MESSAGE)
        def on_message(params: types.ShowMessageParams) -> None:
            self.messages.append(params.message)

        @self.feature(types.WINDOW_LOG_MESSAGE)
        def on_log(params: types.LogMessageParams) -> None:
            if params.type in (types.MessageType.Error, types.MessageType.Warning):
                print(f"  [server] {params.message}", file=sys.stderr)

        @self.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def on_progress_create(params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @self.feature(types.PROGRESS)
        def on_progress(params: types.ProgressParams) -> None:
            value = params.value if isinstance(params.value, dict) else {}
            if value.get("kind") == "begin":
                print(f"  … {value.get('title')}", flush=True)



def _capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
        window=types.WindowClientCapabilities(work_done_progress=True),
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities(),
            code_action=types.CodeActionClientCapabilities(code_action_literal_support=types.ClientCodeActionLiteralOptions(
                code_action_kind=types.ClientCodeActionKindOptions(value_set=["", "quickfix", "refactor"]))),
            publish_diagnostics=types.PublishDiagnosticsClientCapabilities()),
    )


def _open(client: DemoClient, path: Path) -> tuple[str, str]:
    if not path.is_file():
        raise InvalidRequestError(f"{path} is not a file (run the demo from the repository root, or pass --examples)")
    text = path.read_text(encoding="utf-8")
    uri = path.resolve().as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    return uri, text


def _heading(title: str) -> None:
    print(f"\n── {title} " + "─" * max(0, 72 - len(title)), flush=True)


async def _timed(awaitable, what: str):
    started = time.perf_counter()
    result = await asyncio.wait_for(awaitable, STEP_TIMEOUT_S)
    print(f"  ({what}: {time.perf_counter() - started:.1f} s)")
    return result


async def inline_completion(client: DemoClient, path: Path, line: int, character: int) -> None:
    _heading(f"1. Ghost text in {path.name} at line {line + 1}, column {character + 1}")
    uri, text = _open(client, path)
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))
    result = await _timed(client.text_document_inline_completion_async(params), "inline completion")
    items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
    lines = text.split("\n")
    for n in range(max(0, line - 3), line):
        print(f"  {n + 1:>4} │ {lines[n]}")
    suggestion = items[0].insert_text if items else ""
    shown = suggestion if isinstance(suggestion, str) else suggestion.value
    ghost = (lines[line][:character] + shown).split("\n")
    for i, part in enumerate(ghost):
        marker = "▶" if i == 0 else " "
        print(f"  {line + 1 + i:>4} {marker} {part}")
    if not shown:
        print("  (the model had nothing worth showing here)")


async def review(client: DemoClient, path: Path) -> None:
    _heading(f"2. Review of {path.name}: diagnostics and quick fixes")
    uri, text = _open(client, path)
    whole = types.Range(start=types.Position(line=0, character=0), end=types.Position(line=len(text.split("\n")) - 1, character=0))
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=whole, context=types.CodeActionContext(diagnostics=[])))
    print("  code actions offered: " + ", ".join(a.title for a in actions or []))
    command = next(a.command for a in actions or [] if a.title == "loopcoder: Review")
    client.diagnostics_arrived.clear()
    result = await _timed(client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=command.command, arguments=command.arguments)), "review")
    await asyncio.wait_for(client.diagnostics_arrived.wait(), 10)
    diagnostics = client.diagnostics.get(uri, [])
    if result.get("analyzers"):  # a missing one is the server's warning, shown above
        print("  grounded in " + ", ".join(result["analyzers"]))
    if not result.get("complete", True):
        print("  (the answer ran out of tokens: these are the findings it completed)")
    if not diagnostics:
        print("  no findings")
    lines = text.split("\n")
    for d in diagnostics:
        severity = types.DiagnosticSeverity(d.severity).name.lower() if d.severity else "note"
        start = d.range.start
        print(f"  {path.name}:{start.line + 1}:{start.character + 1}: {severity} [{d.code}] {d.message}")
        print(f"      {lines[start.line].strip()}")
        fixes = await client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), range=d.range,
            context=types.CodeActionContext(diagnostics=[d], only=[types.CodeActionKind.QuickFix])))
        for fix in fixes or []:
            for edit in _edits(fix.edit, uri):
                print(f"    quick fix → {edit.new_text.strip()}")


def _edits(edit: types.WorkspaceEdit | None, uri: str) -> list[types.TextEdit]:
    if edit is None:
        return []
    if edit.document_changes:
        return [e for change in edit.document_changes if getattr(change, "text_document", None)
                and change.text_document.uri == uri for e in change.edits]
    return list((edit.changes or {}).get(uri, []))


async def hint(client: DemoClient, path: Path) -> None:
    _heading(f"3. A hint for {path.name}, without the answer")
    uri, _ = _open(client, path)
    result = await _timed(client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="loopcoder.hint", arguments=[{"uri": uri}])), "hint")
    print("  " + (result.get("hint") or "(no hint: the model only had code to offer)").replace("\n", "\n  "))


async def drive(args: argparse.Namespace) -> int:
    client = DemoClient()
    # The server starts an engine daemon of the demo's own (not the user's), stopped at the end.
    scratch = tempfile.TemporaryDirectory(prefix="loopcoder-demo-")
    socket_path = Path(scratch.name) / "engine.sock"
    command = [sys.executable, "-m", "loopcoder.lsp.cli", "lsp", *args.server_args, "--socket", str(socket_path)]
    started = time.perf_counter()
    # Its engine exits 15 s after its last client left, should the demo end while the engine
    # still loads (then no socket answers the stop below, and one started for an editor waits 600 s).
    await client.start_io(*command, env={**os.environ, "LOOPCODER_ENGINE_IDLE_TIMEOUT": "15"})
    exited = False
    try:
        init = await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            capabilities=_capabilities(), process_id=None, root_uri=Path.cwd().as_uri(),
            initialization_options={"maxTokens": args.max_tokens, "actionTokens": args.action_tokens, "temperature": 0})),
            STEP_TIMEOUT_S)
        client.initialized(types.InitializedParams())
        info = init.server_info
        print(f"started `{' '.join(command[1:])}` ({info.name} {info.version}) in {time.perf_counter() - started:.1f} s;\n"
              f"it starts the engine daemon on {socket_path} on first use (`loopcoder status --socket {socket_path}`)")
        examples = args.examples
        await inline_completion(client, examples / "demo.py", 14, 4)
        await review(client, examples / "flask_app.py")
        await hint(client, examples / "range_sums.py")
        await asyncio.wait_for(client.shutdown_async(None), 30)
        client.exit(None)
        exited = True
    except BaseException:
        if client.stderr:
            print("the server's last output:\n  " + "\n  ".join(client.stderr), file=sys.stderr)
        raise
    finally:
        await _stop(client, exited)
        _stop_engine(socket_path)
        scratch.cleanup()
    print(f"\ndone in {time.perf_counter() - started:.1f} s")
    return 0


def _stop_engine(socket_path: Path) -> None:
    if not socket_path.exists():
        return
    try:
        client = DaemonClient(socket_path, client_name="loopcoder demo")
        stats = client.stats()
        print(f"\nengine daemon: {stats['requests']} requests, first token p50 "
              f"{(stats['first_token_p50_s'] or 0) * 1000:.0f} ms, {stats['prefix_hits']} prefix-cache block hits; stopping it")
        client.shutdown()
    except LoopcoderError as exc:
        print(f"could not stop the demo's engine daemon: {exc}", file=sys.stderr)


async def _stop(client: DemoClient, exited: bool, grace_s: float = 10) -> None:
    """Stop the client; a server that was not told to exit (the demo failed) is terminated."""
    server = client._server
    if server is not None and server.returncode is None:
        try:
            await asyncio.wait_for(server.wait(), grace_s if exited else 0.1)
        except asyncio.TimeoutError:
            server.terminate()
            try:
                await asyncio.wait_for(server.wait(), grace_s)
            except asyncio.TimeoutError:
                server.kill()
    await client.stop()


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--examples", type=Path, default=EXAMPLES, help="folder with demo.py, flask_app.py and range_sums.py")
    parser.add_argument("--max-tokens", type=int, default=48, help="maxTokens of the inline completion")
    parser.add_argument("--action-tokens", type=int, default=384, help="actionTokens of review and hint")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_demo_arguments(p)


def run(args: argparse.Namespace) -> int:
    args.server_args = ["--device", args.device, "--dtype", args.dtype, "--quant", args.quant]
    if args.model:
        args.server_args += ["--model", args.model]
    if args.threads:
        args.server_args += ["--threads", str(args.threads)]
    return asyncio.run(drive(args))
