"""Edit-loop benchmark (issue 2): what a keystroke costs when an editor asks for a completion.

The document is the start of Python's own `typing.py` (from the running interpreter, so
it is on every machine), cut so that the cursor sits after about 4K prompt tokens, on a
fresh auto-indented line inside a function body: the user pressed Enter there and now
types `result = compute_value(x)` one keystroke at a time. After every keystroke the
editor asks for a 16-token completion: the prompt comes from
`lsp.features.completion.build_prompt` (what `complete()` sends) and goes through
`Engine.generate_for`, greedy, with EOS and stop strings off so every request decodes
exactly 16 tokens and the timings compare like with like.

Per keystroke it measures
  * keystroke -> first token: from the keystroke (before tokenizing the document) until
    the first token is sampled (the `on_token` callback), and
  * keystroke -> done: until all 16 tokens are out,
for these variants, all in one process on one engine:
  1. warm: one document key reused across keystrokes (the editor's session path); the
     document is pre-warmed with `Engine.prefill` when "opened" (an editor's didOpen);
  2. cold (caching off): every keystroke uses a fresh key and, before it, every
     unreferenced KV block is evicted, which drops its prefix hash: nothing can be
     reused, so every keystroke re-prefills the whole prompt. This is what an engine
     without session or prefix caching pays;
  3. llama.cpp, through llama-cpp-python on the same GGUF and the same prompt token ids,
     with its own prefix reuse (`Llama.generate` keeps the longest common prefix of its
     context when called with its default reset=True), if `import llama_cpp` works
     (`make bench-peers` installs it).

Threads: both pre-warms use every core (prefill scales with them); then each engine
decodes with the thread count, 1 or 2, that measured fastest for it here, unless
`--threads` fixes it. On a small model the second thread may not pay, and a core shared
with other work stalls every multi-threaded step: the run reports its CPU share.

Run: python benchmarks/edit_loop.py [--quick] [--keystrokes N] [--threads N] [--plot-to PNG]
"""

from __future__ import annotations

import argparse
import ast
import bisect
import os
import sys
import time
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from common import fmt, machine_info, markdown_table, median, new_figure, percentile, save_figure, write_json
from loopcoder.engine import Engine, SamplingParams, default_model_path, load_model
from loopcoder.engine.sessions import common_prefix_len
from loopcoder.lsp.features.completion import CompletionOptions, build_prompt

NEW_TOKENS = 16
# Greedy, and nothing may end a request early: each one decodes exactly NEW_TOKENS.
PARAMS = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True)
OPTIONS = CompletionOptions(max_new_tokens=NEW_TOKENS)
# What the user types, one line after another at the cursor's indentation.
SNIPPET = ("result = compute_value(x)", "checked = validate(result, strict=True)", "return checked")
DEFAULT_OUT = Path(__file__).resolve().parent / "out"
_T0 = time.perf_counter()

WARM, COLD, LLAMA = "loopcoder warm", "loopcoder cold (caching off)", "llama.cpp (prefix reuse)"


# -- the document and the keystrokes ----------------------------------------------------


@dataclass(frozen=True)
class Document:
    source: str  # the file it comes from
    text: str  # what the editor holds before the first keystroke
    cursor: int  # character offset of the cursor in `text`
    line: int  # 1-based line of the cursor
    indent: str
    prefix_tokens: int  # prompt tokens at the cursor before typing
    text_tokens: int  # tokens of the whole document


def body_statement_lines(source: str) -> list[tuple[int, str]]:
    """(line, indentation) of each simple statement that starts a line inside a function body."""
    lines = source.splitlines()
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for stmt in node.body:
            # Nested defs and classes may carry decorators above their `lineno`; a
            # docstring is not where anyone types code.
            is_docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or is_docstring:
                continue
            indent = lines[stmt.lineno - 1][: stmt.col_offset]
            if not indent.strip():  # the statement opens its line
                found.add((stmt.lineno, indent))
    return sorted(found)


def make_document(engine: Engine, target_tokens: int, suffix_lines: int) -> Document:
    """typing.py cut so the cursor sits after about `target_tokens` prompt tokens.

    The cursor goes at the first function-body statement whose line start has at least
    `target_tokens` tokens before it; an empty line with that statement's indentation is
    inserted there (the editor's auto-indent after Enter), and the document ends
    `suffix_lines` lines later, so the cursor is mid-file. Deterministic for a given
    Python version.
    """
    path = Path(typing.__file__)
    source = path.read_text(encoding="utf-8")
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    candidates = body_statement_lines(source)

    def tokens_before(candidate: tuple[int, str]) -> int:
        return len(build_prompt(engine, source[: line_starts[candidate[0] - 1]], "", OPTIONS))

    # Prefix token counts grow with the line number, so a binary search finds the line.
    index = min(bisect.bisect_left(candidates, target_tokens, key=tokens_before), len(candidates) - 1)
    line, indent = candidates[index]
    start = line_starts[line - 1]
    end = line_starts[min(line - 1 + suffix_lines, len(line_starts) - 1)]
    text = source[:start] + indent + "\n" + source[start:end]
    cursor = start + len(indent)
    return Document(
        source=str(path),
        text=text,
        cursor=cursor,
        line=line,
        indent=indent,
        prefix_tokens=len(build_prompt(engine, text[:cursor], "", OPTIONS)),
        text_tokens=len(engine.tokenizer.encode(text)),
    )


def keystrokes(indent: str, count: int) -> list[str]:
    """What each keystroke inserts: a character, or Enter with the editor's auto-indent."""
    keys: list[str] = []
    for i, line in enumerate(SNIPPET):
        if i:
            keys.append("\n" + indent)
        keys.extend(line)
    if count > len(keys):
        raise SystemExit(f"--keystrokes {count}: the typed snippet has only {len(keys)} keystrokes")
    return keys[:count]


def edit_states(doc: Document, keys: list[str]) -> list[tuple[str, str]]:
    """(prefix, suffix) around the cursor after each keystroke."""
    prefix, suffix = doc.text[: doc.cursor], doc.text[doc.cursor :]
    states = []
    for key in keys:
        prefix += key
        states.append((prefix, suffix))
    return states


# -- measuring one keystroke ---------------------------------------------------------------


@dataclass
class Sample:
    keystroke: int  # 1-based
    prompt_tokens: int
    cached_tokens: int
    prefill_tokens: int
    tokenize_ms: float
    first_token_ms: float  # keystroke -> first token
    done_ms: float  # keystroke -> all NEW_TOKENS tokens
    prefill_tok_s: float
    decode_tok_s: float
    text: str


class TokenClock:
    """`on_token` callback that stamps the moment each token is sampled."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self, token: int, _text: str) -> None:
        if token >= 0:  # -1 is the final text flush, not a token
            self.stamps.append(time.perf_counter())

    def decode_tok_s(self) -> float:
        # N tokens take N-1 decode steps after the first one is sampled.
        span = self.stamps[-1] - self.stamps[0]
        return (len(self.stamps) - 1) / span if span > 0 else float("nan")


def engine_keystroke(engine: Engine, key: str, prefix: str, suffix: str, number: int) -> Sample:
    clock = TokenClock()
    start = time.perf_counter()
    ids = build_prompt(engine, prefix, suffix, OPTIONS)
    tokenized = time.perf_counter()
    result = engine.generate_for(key, ids, PARAMS, on_token=clock)
    done = time.perf_counter()
    if len(result.token_ids) != NEW_TOKENS:
        raise RuntimeError(f"expected {NEW_TOKENS} tokens, got {len(result.token_ids)} ({result.finish_reason})")
    usage, prefill_s = result.usage, result.timings.prefill_s
    return Sample(
        keystroke=number,
        prompt_tokens=len(ids),
        cached_tokens=usage.cached_tokens,
        prefill_tokens=usage.prefill_tokens,
        tokenize_ms=(tokenized - start) * 1e3,
        first_token_ms=(clock.stamps[0] - start) * 1e3,
        done_ms=(done - start) * 1e3,
        prefill_tok_s=usage.prefill_tokens / prefill_s if prefill_s > 0 else float("nan"),
        decode_tok_s=clock.decode_tok_s(),
        text=result.text,
    )


def forget_cached_blocks(engine: Engine) -> None:
    """Evict every unreferenced KV block. Eviction drops a block's prefix hash, so no
    later request can adopt what earlier ones computed: prefix caching is off."""
    engine.pool.release(engine.pool.allocate(engine.pool.num_available))


# -- the variants ------------------------------------------------------------------------------


def open_document(engine: Engine, key: str, prompt: list[int]) -> float:
    """Pre-warm the document, as an editor does on didOpen; returns the seconds it took."""
    start = time.perf_counter()
    engine.prefill(key, prompt)
    return time.perf_counter() - start


def run_warm(engine: Engine, key: str, states: list[tuple[str, str]]) -> list[Sample]:
    """Every keystroke on the one (already opened) session `key`."""
    samples = [engine_keystroke(engine, key, p, s, i) for i, (p, s) in enumerate(states, 1)]
    engine.close(key)
    return samples


def run_cold(engine: Engine, states: list[tuple[str, str]]) -> list[Sample]:
    samples = []
    for i, (prefix, suffix) in enumerate(states, 1):
        key = f"typing.py cold {i}"
        forget_cached_blocks(engine)
        sample = engine_keystroke(engine, key, prefix, suffix, i)
        engine.close(key)
        if sample.cached_tokens:
            raise RuntimeError(f"cold keystroke {i} reused {sample.cached_tokens} cached tokens")
        samples.append(sample)
    forget_cached_blocks(engine)
    return samples


def llama_cpp_unavailable() -> str | None:
    try:
        import llama_cpp  # noqa: F401
    except Exception as exc:  # an ImportError, or a broken native library
        return f"`import llama_cpp` failed ({type(exc).__name__}: {exc}); `make bench-peers` installs it"
    return None


class LlamaCppPeer:
    """llama.cpp on the same GGUF, fed the engine's prompt token ids."""

    def __init__(self, engine: Engine, threads: int) -> None:
        from llama_cpp import Llama

        self.engine = engine  # for build_prompt and decoding, so both see the same ids
        self.llm = Llama(
            model_path=str(default_model_path()),
            n_ctx=8192,
            n_batch=512,  # the engine's prefill chunk
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self.context: list[int] = []  # the tokens whose K/V llama.cpp holds

    def set_threads(self, n: int) -> None:
        import llama_cpp

        llama_cpp.llama_set_n_threads(self.llm.ctx, n, n)

    def open(self, prompt: list[int]) -> float:
        """Evaluate the document up to the cursor, like the warm variant's pre-warm."""
        start = time.perf_counter()
        self.llm.reset()
        self.llm.eval(prompt)
        self.context = list(prompt)
        return time.perf_counter() - start

    def keystroke(self, prefix: str, suffix: str, number: int) -> Sample:
        stamps: list[float] = []
        tokens: list[int] = []
        start = time.perf_counter()
        ids = build_prompt(self.engine, prefix, suffix, OPTIONS)
        tokenized = time.perf_counter()
        # generate() keeps the longest prefix its context shares with ids[:-1] and
        # evaluates the rest; mirror that to count prefill tokens (its token-shifting
        # reuse may keep a few more, so this count is an upper bound).
        kept = common_prefix_len(self.context, ids[:-1])
        # temp=0 is greedy; repeat_penalty=1 turns its default penalty off, like the engine.
        for token in self.llm.generate(ids, temp=0.0, repeat_penalty=1.0):
            stamps.append(time.perf_counter())
            tokens.append(token)
            if len(tokens) == NEW_TOKENS:
                break
        done = time.perf_counter()
        self.context = ids + tokens[:-1]  # the last sampled token is never evaluated
        return Sample(
            keystroke=number,
            prompt_tokens=len(ids),
            cached_tokens=kept,
            prefill_tokens=len(ids) - kept,
            tokenize_ms=(tokenized - start) * 1e3,
            first_token_ms=(stamps[0] - start) * 1e3,
            done_ms=(done - start) * 1e3,
            prefill_tok_s=(len(ids) - kept) / (stamps[0] - tokenized),
            decode_tok_s=(len(stamps) - 1) / (stamps[-1] - stamps[0]),
            text=self.engine.tokenizer.decode(tokens),
        )

    def run(self, states: list[tuple[str, str]]) -> list[Sample]:
        return [self.keystroke(p, s, i) for i, (p, s) in enumerate(states, 1)]


# -- threads ------------------------------------------------------------------------------------


def choose_threads(set_threads, decode_tok_s, args: argparse.Namespace) -> tuple[int, dict[int, float]]:
    """--threads, or the count with the best decode tok/s (best of a few interleaved tries).

    Measured, not guessed: on a model this small a second thread can cost more in
    synchronization than it brings, and a core busy with other work stalls every step.
    Returns the count and the speeds measured (empty with --threads).
    """
    if args.threads is not None:
        set_threads(args.threads)
        return args.threads, {}
    speeds = dict.fromkeys(sorted({1, min(2, os.cpu_count() or 1)}), 0.0)
    for _ in range(1 if args.quick else 2):
        for n in speeds:  # interleaved, so a noisy moment hits every count alike
            set_threads(n)
            speeds[n] = max(speeds[n], decode_tok_s())
    best = max(speeds, key=speeds.get)
    set_threads(best)
    return best, speeds


def with_cpu_share(threads: int, fn, *args):
    """fn(*args), and the process's CPU seconds over (wall seconds x threads) meanwhile.

    The cores may be shared with other work; a share well below 1 says it took some of
    ours, and every latency of that variant is inflated.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, (time.process_time() - cpu) / ((time.perf_counter() - wall) * threads)


# -- the whole run ------------------------------------------------------------------------------


@dataclass
class Run:
    doc: Document
    keys: list[str]
    open_threads: int  # threads of both pre-warms: every core, as prefill scales
    threads: dict[str, int] = field(default_factory=dict)  # per engine, for the keystrokes
    calibration: dict[str, dict[int, float]] = field(default_factory=dict)  # decode tok/s per count
    open_s: dict[str, float] = field(default_factory=dict)  # pre-warm seconds per variant
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    cpu_share: dict[str, float] = field(default_factory=dict)  # per variant: see `with_cpu_share`
    skipped: dict[str, str] = field(default_factory=dict)


def progress(message: str) -> None:
    """Phase markers on stderr, so stdout stays the report."""
    print(f"[edit_loop {time.perf_counter() - _T0:5.1f} s] {message}", file=sys.stderr, flush=True)



def measure(engine: Engine, args: argparse.Namespace) -> Run:
    doc = make_document(engine, args.prefix_tokens, args.suffix_lines)
    keys = keystrokes(doc.indent, max(args.keystrokes, args.cold_keystrokes))
    run = Run(doc, keys, open_threads=torch.get_num_threads())
    states = edit_states(doc, keys)
    before = (doc.text[: doc.cursor], doc.text[doc.cursor :])  # the cursor before typing
    prompt = build_prompt(engine, *before, OPTIONS)

    progress(f"loopcoder: pre-warming {doc.prefix_tokens} tokens, calibrating threads")
    key = "typing.py"
    run.open_s[WARM] = open_document(engine, key, prompt)
    # Calibrate on a second key: it adopts the open document's blocks by prefix hash,
    # so it decodes at the benchmark's context length without a prefill.
    threads, run.calibration["loopcoder"] = choose_threads(
        torch.set_num_threads, lambda: engine_keystroke(engine, "calibration", *before, 0).decode_tok_s, args)
    engine.close("calibration")
    run.threads[WARM] = run.threads[COLD] = threads
    progress(f"warm: {args.keystrokes} keystrokes on {threads} thread(s)")
    run.samples[WARM], run.cpu_share[WARM] = with_cpu_share(threads, run_warm, engine, key, states[: args.keystrokes])
    progress(f"cold: {args.cold_keystrokes} keystrokes")
    run.samples[COLD], run.cpu_share[COLD] = with_cpu_share(threads, run_cold, engine, states[: args.cold_keystrokes])

    reason = "--no-llama-cpp" if args.no_llama_cpp else llama_cpp_unavailable()
    if reason is not None:
        run.skipped[LLAMA] = reason
        return run
    progress("llama.cpp: pre-warming, calibrating threads")
    peer = LlamaCppPeer(engine, run.open_threads)
    run.open_s[LLAMA] = peer.open(prompt)
    threads, run.calibration["llama.cpp"] = choose_threads(
        peer.set_threads, lambda: peer.keystroke(*before, 0).decode_tok_s, args)
    run.threads[LLAMA] = threads
    progress(f"llama.cpp: {args.keystrokes} keystrokes on {threads} thread(s)")
    run.samples[LLAMA], run.cpu_share[LLAMA] = with_cpu_share(threads, peer.run, states[: args.keystrokes])
    return run


# -- report -------------------------------------------------------------------------------------


def summarize(samples: list[Sample]) -> dict:
    first = [s.first_token_ms for s in samples]
    done = [s.done_ms for s in samples]
    return {
        "keystrokes": len(samples),
        "first_token_ms_p50": percentile(first, 50),
        "first_token_ms_p95": percentile(first, 95),
        "done_ms_p50": percentile(done, 50),
        "done_ms_p95": percentile(done, 95),
        "decode_tok_s": median([s.decode_tok_s for s in samples]),
        "prefill_tok_s": median([s.prefill_tok_s for s in samples]),
        "prefill_tokens_median": median([s.prefill_tokens for s in samples]),
        "tokenize_ms_median": median([s.tokenize_ms for s in samples]),
    }


def results_table(summaries: dict[str, dict], threads: dict[str, int]) -> str:
    headers = ["variant", "threads", "keystrokes", "first token p50 (ms)", "first token p95 (ms)", "done p50 (ms)",
               "done p95 (ms)", "decode tok/s", "prefill tok/s", "prefill tokens / keystroke (median)"]
    rows = [
        [name, str(threads[name]), str(s["keystrokes"]), fmt(s["first_token_ms_p50"]), fmt(s["first_token_ms_p95"]),
         fmt(s["done_ms_p50"]), fmt(s["done_ms_p95"]), fmt(s["decode_tok_s"], 1), fmt(s["prefill_tok_s"], 1),
         fmt(s["prefill_tokens_median"])]
        for name, s in summaries.items()
    ]
    return markdown_table(headers, rows)


def ratios(summaries: dict[str, dict]) -> dict[str, float]:
    """How many times slower than warm each other variant is, at the median."""
    out = {}
    warm = summaries[WARM]
    for other, label in ((COLD, "cold/warm"), (LLAMA, "llama.cpp/warm")):
        if other in summaries:
            for metric, what in (("done_ms_p50", "p50 done"), ("first_token_ms_p50", "p50 first token")):
                out[f"{label} {what}"] = summaries[other][metric] / warm[metric]
    return out


def plot(run: Run, info: dict, paths: list[Path]) -> None:
    fig, ax = new_figure()
    for (name, rows), color in zip(run.samples.items(), ("tab:blue", "tab:red", "tab:green")):
        x = [s.keystroke for s in rows]
        ax.plot(x, [s.done_ms for s in rows], "o-", color=color, label=f"{name}: done ({NEW_TOKENS} tokens)")
        ax.plot(x, [s.first_token_ms for s in rows], "x--", color=color, label=f"{name}: first token")
    ax.set_yscale("log")  # cold is tens of times slower than warm; both must stay readable
    ax.set_xlabel("keystroke")
    ax.set_ylabel("latency from keystroke (ms, log scale)")
    per_engine = {name.split()[0]: n for name, n in run.threads.items()}  # warm and cold share one engine
    threads = ", ".join(f"{engine} {n}" for engine, n in per_engine.items())
    ax.set_title(f"edit loop: typing.py, {run.doc.prefix_tokens}-token prefix, {NEW_TOKENS} tokens per keystroke\n"
                 f"{info['cpu']}, threads: {threads}; loopcoder {info['precision']}; torch {info['torch']}, {info['date'][:10]}",
                 fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: lines stay visible
    save_figure(fig, paths)


def print_header(info: dict, run: Run) -> None:
    doc = run.doc
    print(f"# edit loop — {info['date']}")
    print(f"loopcoder precision: {info['precision']}")
    print(f"CPU: {info['cpu']} ({info['cpu_count']} cores); torch {info['torch']}; Python {info['python']}; "
          f"load average before/after: {info['loadavg_before']:.2f}/{info['loadavg_after']:.2f}")
    for name, speeds in run.calibration.items():
        measured = ", ".join(f"{n} thread(s) {v:.1f}" for n, v in speeds.items()) or "not measured (--threads)"
        print(f"threads, {name}: decode tok/s at {measured}")
    print(f"document: {doc.source}, first {len(doc.text)} chars ({doc.text_tokens} tokens); cursor on line "
          f"{doc.line} after {doc.prefix_tokens} prompt tokens; typed {''.join(run.keys)!r}; "
          f"{NEW_TOKENS} new tokens per keystroke")
    print(f"pre-warm on open ({run.open_threads} threads): " + ", ".join(f"{k} {v:.1f} s" for k, v in run.open_s.items()))
    print("CPU share (process CPU / wall x threads; well below 1: other work took our cores): "
          + ", ".join(f"{k} {v:.2f}" for k, v in run.cpu_share.items()))


def print_results(table: str, ratio: dict[str, float], skipped: dict[str, str]) -> None:
    print()
    print(table)
    print()
    for name, value in ratio.items():
        print(f"{name}: {value:.1f}x")
    for name, why in skipped.items():
        print(f"{name}: skipped — {why}")
    print("(prefill tok/s of a warm keystroke is over the token or two it changes: one short step, not throughput)")


def write_outputs(args: argparse.Namespace, info: dict, run: Run, summaries: dict, table: str, ratio: dict) -> None:
    out_dir = args.out_dir
    plot(run, info, [out_dir / "edit_loop.png"] + ([args.plot_to] if args.plot_to else []))
    write_json(out_dir / "edit_loop.json", {
        "meta": info,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "document": {k: v for k, v in asdict(run.doc).items() if k != "text"} | {"chars": len(run.doc.text)},
        "typed": "".join(run.keys),
        "open_threads": run.open_threads,
        "open_prefill_s": run.open_s,
        "threads": run.threads,
        "thread_calibration_decode_tok_s": {k: {str(n): v for n, v in c.items()} for k, c in run.calibration.items()},
        "cpu_share": run.cpu_share,
        "variants": {name: {"summary": summaries[name], "samples": [asdict(s) for s in rows]}
                     for name, rows in run.samples.items()},
        "skipped": run.skipped,
        "ratios": ratio,
    })
    (out_dir / "edit_loop.md").write_text(table + "\n", encoding="utf-8")
    written = [out_dir / "edit_loop.json", out_dir / "edit_loop.png", out_dir / "edit_loop.md"]
    print("\nwrote " + ", ".join(map(str, written + ([args.plot_to] if args.plot_to else []))))


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keystrokes", type=int, default=25, help="warm and llama.cpp keystrokes (default 25: one line)")
    p.add_argument("--cold-keystrokes", type=int, default=5, help="cold keystrokes; each re-prefills everything")
    p.add_argument("--prefix-tokens", type=int, default=4096, help="prompt tokens before the cursor (about)")
    p.add_argument("--suffix-lines", type=int, default=40, help="lines of the file kept after the cursor")
    p.add_argument("--threads", type=int, default=None, help="keystroke threads for both engines; default: calibrate each")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="JSON, PNG and table go here")
    p.add_argument("--plot-to", type=Path, default=None, help="also write the plot here (e.g. docs/benchmarks/edit_loop.png)")
    p.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp variant")
    p.add_argument("--quick", action="store_true", help="smoke run (< 60 s): shortest prefix, 3 keystrokes, 1 cold")
    p.add_argument("--quant", default="auto", choices=("auto", "none", "int8", "int4", "fp8", "gguf"),
                   help="weight quantization, as `loopcoder --quant` (default auto: int4 for this Q4_1 GGUF)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="activation and KV dtype, as `loopcoder --dtype`")
    args = p.parse_args(argv)
    if args.quick:
        # typing.py's first function body starts after about 1K tokens: the shortest there is.
        args.keystrokes, args.cold_keystrokes, args.prefix_tokens = 3, 1, 512
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Others' work on the same cores skews every number: the load average says if there was any.
    info = machine_info() | {"loadavg_before": os.getloadavg()[0]}
    started = time.perf_counter()
    engine = load_model(dtype=None if args.dtype == "auto" else getattr(torch, args.dtype), quant=args.quant)
    info["precision"] = engine.config.precision
    progress(f"model loaded ({info['precision']})")
    info["load_s"] = time.perf_counter() - started
    run = measure(engine, args)
    info["loadavg_after"] = os.getloadavg()[0]
    summaries = {name: summarize(rows) for name, rows in run.samples.items()}
    table, ratio = results_table(summaries, run.threads), ratios(summaries)
    print_header(info, run)
    print_results(table, ratio, run.skipped)
    write_outputs(args, info, run, summaries, table, ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
