"""`loopcoder` command line: info, generate, complete, lsp, demo, eval, scaffold, review, hint.

Errors from the engine (`LoopcoderError`) are printed as one clear line on stderr with
exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path

DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTS = ("auto", "none", "int8", "int4", "fp8")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="Hugging Face model directory or .gguf file (default: embedded SmolLM2-135M)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="activation and KV dtype (default auto: bfloat16 when quantized or on a GPU, else float32)")
    p.add_argument("--quant", default="auto", choices=QUANTS,
                   help="weight-only quantization (default auto: int4 for a 4-5 bit GGUF on a bf16-capable CPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")


def _add_sampling_args(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("--max-tokens", type=int, default=max_tokens, help=f"tokens to generate (default: {max_tokens})")
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser. `only`: the subcommand being run. The options of the front-end
    subcommands (complete, demo, eval, scaffold, review, hint) come from their modules,
    which import pygls, pydantic, jinja2 and more: they are added for that subcommand only,
    so that `loopcoder engine` starts without them (None: every subcommand's, for tests)."""

    def full(name: str) -> bool:
        return only is None or only == name

    parser = argparse.ArgumentParser(prog="loopcoder", description="A self-hosted code assistant engine.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print the model's architecture, size and KV bytes per token")
    _add_model_args(info)
    info.add_argument("--config", type=Path, help="describe a config.json alone (no weights are read or allocated)")

    gen = sub.add_parser("generate", help="generate text from a prompt, streamed to stdout")
    _add_model_args(gen)
    _add_sampling_args(gen, 128)
    gen.add_argument("--prompt", required=True, help="the prompt text ('-' reads stdin)")
    gen.add_argument("--chat", action="store_true", help="wrap the prompt as a user turn of the chat template")
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")

    comp = sub.add_parser("complete", help="print the completion at a cursor in FILE")
    _add_model_args(comp)
    _add_sampling_args(comp, 64)
    comp.add_argument("file", type=Path)
    comp.add_argument("--line", type=int, required=True, help="1-based line of the cursor")
    comp.add_argument("--col", type=int, required=True, help="1-based column of the cursor")
    comp.add_argument("--single-line", action="store_true", help="stop at the end of the line")
    comp.add_argument("--show-prompt-tail", action="store_true", help="show the lines before the cursor too")
    if any(full(name) for name in ("complete", "scaffold", "review", "hint")):
        from loopcoder.lsp.features.engine_loading import add_backend_arguments
    if full("complete"):
        add_backend_arguments(comp)

    lsp = sub.add_parser("lsp", help="run the language server (stdio unless --tcp); options are defaults "
                                     "that the client's initializationOptions override")
    _add_model_args(lsp)
    lsp.add_argument("--max-tokens", type=int, default=64, help="tokens to generate per suggestion (default: 64)")
    lsp.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")
    lsp.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdin/stdout")
    lsp.add_argument("--no-prewarm", action="store_true", help="do not prefill documents on open and save")
    lsp.add_argument("--backend", default="local", choices=("local", "inprocess", "openai", "tgi"),
                     help="local: the shared engine daemon, started when none runs (default); "
                          "inprocess: load the model into this server; openai / tgi: a remote server at --url")
    lsp.add_argument("--socket", default=None, help="the engine daemon's unix socket (default: as for `loopcoder engine`)")
    lsp.add_argument("--url", default=None, help="the remote server's base URL for --backend openai / tgi")
    lsp.add_argument("--api-key", default=None, help="bearer token for the remote server (default: $LOOPCODER_API_KEY)")
    lsp.add_argument("--tokenizer", default=None, help="the remote model's tokenizer: its directory or .gguf")

    demo = sub.add_parser("demo", help="start `loopcoder lsp` and drive it as an editor does: ghost text, "
                                       "a review with quick fixes, a hint")
    _add_model_args(demo)
    if full("demo"):
        from loopcoder.lsp.demo import add_arguments

        add_arguments(demo)

    eng = sub.add_parser("engine", help="the engine daemon: run it in the foreground, or start|stop|status")
    eng.add_argument("action", nargs="?", choices=("start", "stop", "status"),
                     help="start: detached, in the background; stop; status: a table. None: run in the foreground")
    _add_model_args(eng)
    eng.add_argument("--socket", type=Path, default=None,
                     help="unix socket path (default: $XDG_RUNTIME_DIR/loopcoder/engine.sock or "
                          "/tmp/loopcoder-UID/engine.sock; env LOOPCODER_SOCKET)")
    eng.add_argument("--idle-timeout", type=float, default=0.0,
                     help="exit after this many seconds without a client (default: 0, never)")
    eng.add_argument("--kv-budget", type=str, default=None, help="KV cache size, e.g. 2GiB (default: the engine's)")
    eng.add_argument("--http", metavar="HOST:PORT", default=None,
                     help="also serve the HTTP API (TGI and OpenAI shapes, docs/api.md), e.g. 127.0.0.1:8080; "
                          "an address off loopback needs --http-token-file")
    eng.add_argument("--http-token-file", type=Path, default=None,
                     help="a file holding the bearer token every HTTP request but /health must carry")
    eng.add_argument("--tensor-parallel", type=int, default=1, metavar="N",
                     help="split the model over N processes, one per GPU (rank r on cuda:r; on cpu, N processes "
                          "over gloo); the daemon is rank 0 and starts the others (default: 1)")

    status = sub.add_parser("status", help="the running engine: model, device, memory, documents, clients, latency")
    status.add_argument("--socket", type=Path, default=None, help="unix socket path (as for `loopcoder engine`)")

    evaluate = sub.add_parser("eval", help="HumanEval pass@1 (generation, single- and multi-line infilling) of the "
                                           "completions an editor gets, each run in a sandbox")
    _add_model_args(evaluate)
    if full("eval"):
        from loopcoder.lsp.eval import command as eval_command

        eval_command.add_arguments(evaluate)

    scaffold = sub.add_parser("scaffold", help="a form app (SQLite, FastAPI, HTML form, tests) from one sentence "
                                               "or a form spec (docs/scaffold.md)")
    _add_model_args(scaffold)
    if full("scaffold"):
        from loopcoder.lsp.features.scaffold import command as scaffold_command

        add_backend_arguments(scaffold)
        scaffold_command.add_arguments(scaffold)

    if full("review") or full("hint"):
        from loopcoder.lsp.review_cli import add_hint_arguments, add_review_arguments

    review = sub.add_parser("review", help="review a change set (--git BASE..HEAD, --diff FILE, or files) for CI: "
                                           "SARIF, a GitHub pull-request review, or text (docs/ci.md)")
    _add_model_args(review)
    if full("review"):
        add_backend_arguments(review)
        add_review_arguments(review)

    hint = sub.add_parser("hint", help="one Socratic question about PROBLEM_FILE's SOLUTION_FILE: a nudge, never code")
    _add_model_args(hint)
    if full("hint"):
        add_backend_arguments(hint)
        add_hint_arguments(hint)
    return parser


def _subcommand(argv: list[str]) -> str:
    """The subcommand argv names (its first word that is not an option), "" for none."""
    return next((word for word in argv if not word.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_subcommand(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from loopcoder.engine.errors import LoopcoderError

    try:
        return COMMANDS[args.command](args)
    except LoopcoderError as e:
        print(f"loopcoder: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _load(args: argparse.Namespace):
    import torch

    from loopcoder.engine import load_model
    from loopcoder.engine.errors import LoopcoderError, ModelLoadError

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    kv_budget = parse_size(getattr(args, "kv_budget", None))
    try:
        engine = load_model(args.model, device=args.device, dtype=dtype, quant=args.quant, progress=sys.stderr.isatty(),
                            kv_budget_bytes=kv_budget)
    except LoopcoderError:
        raise
    except (RuntimeError, AssertionError, ValueError, OSError) as e:  # torch's "no CUDA", a bad device string
        raise ModelLoadError(f"could not load the model on device {args.device!r}: {e}") from e
    logging.getLogger("loopcoder").info("model loaded in %.2f s", time.perf_counter() - started)
    return engine


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000, "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
               "g": 1 << 30, "gib": 1 << 30, "gb": 10**9}


def parse_size(text: str | None) -> int | None:
    """'2GiB', '512MiB', '1.5G', '1000000' -> bytes; None -> None."""
    from loopcoder.engine.errors import InvalidRequestError

    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise InvalidRequestError(f"size {text!r} is not understood: use e.g. 512MiB or 2GiB")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def _quant_kinds(model) -> set[str]:
    from loopcoder.engine.quantization import QuantLinear

    return {type(m.weight_q).__name__.removesuffix("Weight").lower() for m in model.modules() if isinstance(m, QuantLinear)}


def _info_from_config(path: Path) -> int:
    from loopcoder.engine.config import ModelConfig

    cfg = ModelConfig.from_json_file(path)
    params = cfg.num_parameters()
    rows = [
        ("config", str(path)),
        ("architecture", cfg.model_type),
        *_shape_rows(cfg),
        ("parameters", f"{params:,}"),
        ("bf16 weight bytes", _human(2 * params)),
        ("bf16 bytes streamed per decoded token", _human(2 * params * cfg.loop_num)),
        ("bf16 KV bytes per token", f"{cfg.kv_bytes_per_token(2):,}"),
    ]
    _print_rows(rows)
    return 0


def _shape_rows(cfg) -> list[tuple[str, str]]:
    loops = f" x {cfg.loop_num} loops, window {cfg.loop_window_size}" if cfg.is_loop else ""
    return [
        ("layers", f"{cfg.num_hidden_layers}{loops}"),
        ("hidden / heads / kv heads / head_dim",
         f"{cfg.hidden_size} / {cfg.num_attention_heads} / {cfg.num_key_value_heads} / {cfg.head_dim}"),
    ]


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def cmd_info(args: argparse.Namespace) -> int:
    from loopcoder.engine.quantization import weight_bytes

    if args.config is not None:
        return _info_from_config(args.config)
    engine = _load(args)
    cfg = engine.model_config
    dtype_bytes = engine.kv.k.element_size()
    rows = [
        ("model", args.model or "embedded default (SmolLM2-135M-Instruct Q4_1 GGUF)"),
        ("architecture", f"{cfg.model_type} {list(cfg.architectures) or ''}".strip()),
        *_shape_rows(cfg),
        ("vocab", str(cfg.vocab_size)),
        ("parameters", f"{cfg.num_parameters():,}"),
        ("dtype", str(engine.config.dtype).removeprefix("torch.")),
        ("quantization", ", ".join(sorted(_quant_kinds(engine.model))) or "none"),
        ("precision chosen", engine.config.precision or "as asked"),
        ("weight bytes", _human(weight_bytes(engine.model))),
        ("KV bytes per token", f"{cfg.kv_bytes_per_token(dtype_bytes):,}"),
        ("KV cache", f"{_human(engine.kv.nbytes)} = {engine.pool.num_blocks} blocks x {engine.cache_config.block_size} tokens"),
        ("FIM", _fim_name(engine)),
    ]
    _print_rows(rows)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from loopcoder.engine.sampling import SamplingParams

    engine = _load(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if args.chat:
        prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    params = SamplingParams(max_new_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, seed=args.seed, stop=tuple(args.stop))
    result = engine.generate_for("<cli>", engine.tokenizer.encode(prompt), params,
                                 on_token=lambda _tok, text: print(text, end="", flush=True))
    print()
    _report(result)
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    from loopcoder.engine.errors import InvalidRequestError
    from loopcoder.lsp.features.completion import CompletionOptions, complete, offset_of

    try:
        text = args.file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidRequestError(f"cannot read {args.file}: {e}") from None
    offset = offset_of(text, args.line, args.col)
    from loopcoder.lsp.features.engine_loading import engine_for_args

    engine = engine_for_args(args, lambda: _load(args))
    options = CompletionOptions(max_new_tokens=args.max_tokens, multiline=not args.single_line, temperature=args.temperature)
    completion = complete(engine, args.file.resolve().as_uri(), text, offset, options)
    if args.show_prompt_tail:
        tail = text[:offset].split("\n")[-6:]
        print("\n".join(f"    {line}" for line in tail[:-1]))
        print(f"    {tail[-1]}\033[2m{completion.text or '(no completion)'}\033[0m" if sys.stdout.isatty()
              else f"    {tail[-1]}⟨{completion.text}⟩")
    else:
        print(completion.text)
    _report(completion.result)
    return 0


def cmd_lsp(args: argparse.Namespace) -> int:
    from loopcoder.engine.errors import InvalidRequestError
    from loopcoder.lsp.features.settings import ServerSettings
    from loopcoder.lsp.server import build_server

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = ServerSettings(model=args.model, device=args.device, dtype=args.dtype, quant=args.quant,
                              max_tokens=args.max_tokens, temperature=args.temperature, prewarm=not args.no_prewarm,
                              backend=args.backend, socket=args.socket, threads=args.threads or 0, url=args.url,
                              api_key=args.api_key, tokenizer=args.tokenizer)
    server = build_server(settings)
    if args.tcp is None:
        server.start_io()  # stdout is the protocol channel: logging goes to stderr only
        return 0
    host, _, port = args.tcp.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidRequestError(f"--tcp wants HOST:PORT, e.g. 127.0.0.1:2087, not {args.tcp!r}")
    server.start_tcp(host, int(port))
    return 0


def _socket(args: argparse.Namespace) -> Path:
    from loopcoder.engine.serving.socket_file import default_socket_path

    return args.socket or default_socket_path()


def _model_argv(args: argparse.Namespace) -> tuple[str, ...]:
    argv = ["--device", args.device, "--dtype", args.dtype, "--quant", args.quant]
    if args.model:
        argv += ["--model", str(Path(args.model).resolve())]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.kv_budget:
        argv += ["--kv-budget", args.kv_budget]
    if getattr(args, "http", None):
        argv += ["--http", args.http]
    if getattr(args, "http_token_file", None):
        argv += ["--http-token-file", str(Path(args.http_token_file).resolve())]
    if getattr(args, "tensor_parallel", 1) != 1:
        argv += ["--tensor-parallel", str(args.tensor_parallel)]
    return tuple(argv)


def cmd_engine(args: argparse.Namespace) -> int:
    from loopcoder.engine.serving import daemon, socket_file
    from loopcoder.engine.serving.client import AutoStart, DaemonClient
    from loopcoder.engine.errors import EngineUnavailableError, InvalidRequestError

    path = _socket(args)
    if args.action == "status":
        return cmd_status(args)
    if args.action == "stop":
        try:
            client = DaemonClient(path, client_name="loopcoder engine stop")
        except EngineUnavailableError:
            print(f"no engine is running on {path}")
            return 0
        pid = client.stats().get("pid")
        client.shutdown()
        deadline = time.monotonic() + 30
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"engine stopped (pid {pid})")
        return 0
    if args.action == "start":
        client = DaemonClient(path, client_name="loopcoder engine start",
                              autostart=AutoStart(_model_argv(args), idle_timeout_s=args.idle_timeout))
        stats = client.stats()
        print(f"engine running: pid {stats['pid']}, model {stats['model'] or '(default)'}, socket {path}")
        return 0
    http = token = None
    if args.http:  # checked before the model loads: a bad address fails at once
        from loopcoder.engine.serving.http import check_bind, parse_address, read_token_file

        http = parse_address(args.http)
        token = read_token_file(args.http_token_file) if args.http_token_file else None
        check_bind(http[0], token)
    elif args.http_token_file:
        raise InvalidRequestError("--http-token-file needs --http HOST:PORT")
    if args.tensor_parallel < 1:
        raise InvalidRequestError(f"--tensor-parallel must be at least 1, not {args.tensor_parallel}")
    from loopcoder.engine.errors import EngineBusyError

    try:
        lock = socket_file.claim_socket(path)  # noqa: F841  held until this process exits
    except EngineBusyError as e:
        print(f"loopcoder: error: {e}", file=sys.stderr)
        return EngineBusyError.exit_code
    ranks = None
    if args.tensor_parallel > 1:
        engine, ranks = _launch_tensor_parallel(args)
    else:
        engine = _load(args)
    name = str(args.model) if args.model else "SmolLM2-135M-Instruct (embedded default)"
    where = f"{path}" + (f" and http://{args.http}" if http else "")
    split = f" over {args.tensor_parallel} ranks" if ranks is not None else ""
    print(f"loopcoder engine: {name} on {args.device}{split}, listening on {where}", file=sys.stderr, flush=True)
    daemon.run(engine, path, model_name=name, model_path=str(Path(args.model).resolve()) if args.model else "",
               idle_timeout_s=args.idle_timeout or None, http=http, http_token=token, ranks=ranks)
    if ranks is not None and ranks.plan.backend == "nccl":
        # The followers have left; NCCL's communicators block the interpreter's teardown
        # (seen on 2 H200s, torch 2.11), so this rank exits as the followers do.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _launch_tensor_parallel(args: argparse.Namespace):
    """The engine as rank 0 of args.tensor_parallel ranks, and its follower processes."""
    import torch

    from loopcoder.engine.errors import LoopcoderError, ModelLoadError
    from loopcoder.engine.parallel.launch import launch_engine

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    try:
        return launch_engine(args.model, args.tensor_parallel, device=args.device, dtype=dtype, quant=args.quant,
                             kv_budget_bytes=parse_size(args.kv_budget), threads=args.threads or 0,
                             progress=sys.stderr.isatty())
    except LoopcoderError:
        raise
    except (RuntimeError, AssertionError, ValueError, OSError) as e:  # torch's "no CUDA", a bad device string
        raise ModelLoadError(f"could not load the model over {args.tensor_parallel} ranks on device "
                             f"{args.device!r}: {e}") from e


def cmd_status(args: argparse.Namespace) -> int:
    from loopcoder.engine.serving.client import DaemonClient
    from loopcoder.engine.errors import EngineUnavailableError

    path = _socket(args)
    try:
        stats = DaemonClient(path, client_name="loopcoder status").stats()
    except EngineUnavailableError as e:
        print(f"loopcoder: {e}", file=sys.stderr)
        return 1

    def ms(seconds):
        return "-" if seconds is None else f"{seconds * 1000:.0f} ms"

    kv_used = (stats["blocks_total"] - stats["blocks_free"]) * stats["block_size"] * stats["kv_bytes_per_token"]
    _print_rows([
        ("model", stats["model"] or "(default)"),
        ("device", f"{stats['device']} ({stats['dtype'].removeprefix('torch.')})"),
        ("memory (KV cache)", f"{_human(kv_used)} of {_human(stats['kv_bytes'])} in use; "
                              f"{stats['blocks_cached']} blocks cached for reuse"),
        ("warm documents", str(stats["sessions"])),
        ("connected clients", f"{len(stats['clients']) - 1}"
                              + (f": {', '.join(c for c in stats['clients'] if not c.startswith('loopcoder status'))}"
                                 if len(stats["clients"]) > 1 else "")),
        ("recent latency (p50)", f"first token {ms(stats['first_token_p50_s'])}, whole request "
                                 f"{ms(stats['total_p50_s'])} over {stats['requests']} requests"),
        ("queue", f"{stats['running']} running, {stats['queue_depth']} waiting"),
        ("tensor parallel", _tensor_parallel_row(stats)),
        *_graph_rows(stats),
        ("process", f"pid {stats['pid']}, up {stats['uptime_s']:.0f} s, socket {path}"),
    ])
    return 0


def _tensor_parallel_row(stats: dict) -> str:
    world_size = stats.get("tensor_parallel", 1)
    if world_size == 1:
        return "off (1 process)"
    pids = ", ".join(map(str, stats.get("tensor_parallel_pids", [])))
    return f"{world_size} ranks: rank 0 here, followers pid {pids}; KV cache figures are rank 0's share"


def _graph_rows(stats: dict) -> list[tuple[str, str]]:
    """The CUDA graph row of `loopcoder status`, on GPU engines only."""
    if not str(stats.get("device", "")).startswith("cuda"):
        return []
    sizes = stats.get("cuda_graphs")
    if sizes is None:
        return [("CUDA graphs", "off: every step runs eagerly (docs/troubleshooting.md, Speed)")]
    captured = ", ".join(map(str, sizes)) or "none yet"
    extend = ", ".join(map(str, stats.get("cuda_graphs_extend") or [])) or "none yet"
    return [("CUDA graphs", f"decode batches {captured}; prefills of {extend} rows; "
                            f"{stats.get('graph_replays', 0)} steps replayed")]


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from loopcoder.lsp.demo import run

    args.server_args = ["--device", args.device, "--dtype", args.dtype, "--quant", args.quant]
    if args.model:
        args.server_args += ["--model", args.model]
    if args.threads:
        args.server_args += ["--threads", str(args.threads)]
    return asyncio.run(run(args))


def cmd_eval(args: argparse.Namespace) -> int:
    from loopcoder.lsp.eval import command as eval_command

    from loopcoder.lsp.features.engine_loading import engine_for_args

    return eval_command.run(args, lambda: engine_for_args(args, lambda: _load(args)))


def cmd_scaffold(args: argparse.Namespace) -> int:
    from loopcoder.lsp.features.engine_loading import engine_for_args
    from loopcoder.lsp.features.scaffold import command as scaffold_command

    return scaffold_command.run(args, lambda: engine_for_args(args, lambda: _load(args)))


def cmd_review(args: argparse.Namespace) -> int:
    from loopcoder.lsp.features.engine_loading import engine_for_args
    from loopcoder.lsp.review_cli import run_review

    return run_review(args, lambda: engine_for_args(args, lambda: _load(args)))


def cmd_hint(args: argparse.Namespace) -> int:
    from loopcoder.lsp.features.engine_loading import engine_for_args
    from loopcoder.lsp.review_cli import run_hint

    return run_hint(args, lambda: engine_for_args(args, lambda: _load(args)))


def _report(result) -> None:
    u, t = result.usage, result.timings
    print(
        f"[{u.prompt_tokens} prompt tokens ({u.cached_tokens} cached), {u.generated_tokens} generated, "
        f"first token {t.first_token_s * 1000:.0f} ms, total {t.total_s * 1000:.0f} ms, {result.finish_reason}]",
        file=sys.stderr,
    )


def _fim_name(engine) -> str:
    fim = getattr(engine.tokenizer, "fim_format", None)
    return "none (completes from the prefix only)" if fim is None else str(fim)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


COMMANDS = {"info": cmd_info, "generate": cmd_generate, "complete": cmd_complete, "lsp": cmd_lsp, "demo": cmd_demo,
            "eval": cmd_eval, "engine": cmd_engine, "status": cmd_status, "scaffold": cmd_scaffold,
            "review": cmd_review, "hint": cmd_hint}

if __name__ == "__main__":
    sys.exit(main())
