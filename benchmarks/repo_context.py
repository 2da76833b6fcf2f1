"""What repository context costs a keystroke: the same typing with and without it, in one run.

A line of a real file in a real repository is removed from the cursor on and typed back one
character at a time; after each character the engine completes at the cursor, as an editor's
ghost text asks. Two passes over the same keystrokes, each on its own document key (so the
warm K/V of one does not serve the other):

    none    the document alone (what completions got before repository context)
    repo    repository context first (lsp/features/context/, the budget --budget tokens)

Per keystroke: the tokens prefilled (prompt minus cached), the first token's and the whole
completion's time, and for `repo` the time to build the context (index lookups, ranking,
encoding). The table gives medians (p50) and p90, and the ratio repo / none; the target is a
p50 ratio of at most 1.2 for first token and done. The index is built once, before timing,
and its time is printed.

Run:  python benchmarks/repo_context.py [--repo .] [--file lsp/features/completion.py]
          [--line N] [--keystrokes 40] [--budget 1024] [--json-out R.json] [--plot-to P.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from loopcoder.lsp.features.completion import CompletionOptions, complete
from loopcoder.lsp.features.context.provider import RepoContextProvider

from common import fmt, machine_info, markdown_table, median, new_figure, percentile, save_figure, write_json


def typed_line(text: str, line: int) -> tuple[str, str, str]:
    """(text before the line's typed part, the part to type, the text after it): the line from its
    first non-blank character to its end is typed back."""
    lines = text.split("\n")
    current = lines[line - 1]
    indent = len(current) - len(current.lstrip())
    before = "\n".join(lines[: line - 1] + [current[:indent]])
    after = "\n" + "\n".join(lines[line:])
    return before, current[indent:], after


def run(engine, provider: RepoContextProvider | None, path: Path, before: str, typed: str, after: str,
        key: str, tokens: int) -> list[dict]:
    rows = []
    options = CompletionOptions(max_new_tokens=tokens)
    for n in range(1, len(typed) + 1):
        text = before + typed[:n] + after
        offset = len(before) + n
        started = time.perf_counter()
        context = provider.context_ids(engine.tokenizer, path, text, offset) if provider is not None else None
        context_ms = (time.perf_counter() - started) * 1000
        first: list[float] = []
        started = time.perf_counter()
        result = complete(engine, key, text, offset, options, context=context,
                          on_text=lambda _: first or first.append(time.perf_counter()))
        done = time.perf_counter()
        usage = result.result.usage
        rows.append({"keystroke": n, "prompt": result.prompt_tokens, "prefilled": result.prompt_tokens - usage.cached_tokens,
                     "context_tokens": len(context) if context else 0, "context_ms": context_ms,
                     "first_ms": ((first[0] if first else done) - started) * 1000 + context_ms,
                     "done_ms": (done - started) * 1000 + context_ms})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--file", type=Path, default=Path("lsp/features/inline_completion.py"))
    parser.add_argument("--line", type=int, default=0, help="1-based line to type (default: the longest of the file's "
                                                            "second half)")
    parser.add_argument("--keystrokes", type=int, default=40, help="at most this many characters typed")
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=16, help="tokens each completion generates at most")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--plot-to", type=Path)
    args = parser.parse_args()

    from loopcoder.engine import load_model

    repo, path = args.repo.resolve(), (args.repo / args.file).resolve()
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    line = args.line or max(range(len(lines) // 2, len(lines)), key=lambda i: len(lines[i].strip())) + 1
    before, typed, after = typed_line(text, line)
    typed = typed[: args.keystrokes]
    engine = load_model()
    provider = RepoContextProvider([repo], args.budget)
    started = time.perf_counter()
    provider.build()
    build_s = time.perf_counter() - started
    stats = provider.stats()
    print(f"{path.relative_to(repo)}:{line}, typing {typed!r}; index: {stats['files']} files in {build_s:.2f} s")
    for key, p in (("none", None), ("repo", provider)):  # warm each document's K/V once, as an open file is
        run(engine, p, path, before, typed[:1], after, f"file:///bench/{key}", args.tokens)
    passes = {key: run(engine, p, path, before, typed, after, f"file:///bench/{key}", args.tokens)
              for key, p in (("none", None), ("repo", provider))}
    headers = ["", "prefilled tokens p50", "first token p50 ms", "first p90", "done p50 ms", "done p90",
               "context ms p50", "context tokens"]
    table = []
    for key, rows in passes.items():
        table.append([key, fmt(median([r["prefilled"] for r in rows])), fmt(median([r["first_ms"] for r in rows]), 1),
                      fmt(percentile([r["first_ms"] for r in rows], 90), 1), fmt(median([r["done_ms"] for r in rows]), 1),
                      fmt(percentile([r["done_ms"] for r in rows], 90), 1),
                      fmt(median([r["context_ms"] for r in rows]), 2), fmt(median([r["context_tokens"] for r in rows]))])
    ratio = {m: median([r[m] for r in passes["repo"]]) / median([r[m] for r in passes["none"]])
             for m in ("first_ms", "done_ms")}
    table.append(["repo / none", "", fmt(ratio["first_ms"], 2), "", fmt(ratio["done_ms"], 2), "", "", ""])
    print(markdown_table(headers, table))
    if args.json_out:
        write_json(args.json_out, {"machine": machine_info(), "file": str(path.relative_to(repo)), "line": line,
                                   "typed": typed, "budget": args.budget, "index_seconds": build_s,
                                   "index": {k: v for k, v in stats.items() if k != "symbols"}, "passes": passes,
                                   "ratio_p50": ratio})
    if args.plot_to:
        fig, ax = new_figure()
        for key, rows in passes.items():
            ax.plot([r["keystroke"] for r in rows], [r["done_ms"] for r in rows], marker="o", label=f"{key}: done")
        ax.set_xlabel("keystroke")
        ax.set_ylabel("ms")
        ax.set_title(f"A keystroke with and without repository context ({args.budget}-token budget)")
        ax.legend()
        save_figure(fig, [args.plot_to])


if __name__ == "__main__":
    main()
