"""HumanEval pass@1 of one GGUF through three paths, on the same tasks, in the same sandbox.

  * editor: `loopcoder eval` (lsp.features.completion.complete: prompt building, token
    healing, stop rules, post-processing);
  * raw: `loopcoder eval --raw` (the bare prompt to our engine, simple stops);
  * llama-cpp: llama.cpp (llama-cpp-python) on the same GGUF file and the same prompt
    text, greedy (temp 0, no repeat penalty), with raw's max tokens and stop strings.
    Its own tokenizer reads the text; `Llama.generate` keeps the K/V of the longest
    common prefix, so a problem's tasks reuse their shared prompt there too.

raw against llama-cpp compares the engines on like inputs; editor against raw is what
our processing adds or loses. Per-task rows go to OUT_DIR/<path>.jsonl; the table is
printed and written to OUT_DIR/humaneval.md, and the plot (pass@1 with 95% Wilson
intervals) to --plot-to.

Run: python benchmarks/humaneval.py [--paths editor,raw,llama-cpp] [--kinds generation,single-line]
                                     [--limit N] [--seed S] [--threads N] [--plot-to PNG]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from common import machine_info, markdown_table, new_figure, save_figure
from loopcoder.engine import default_model_path, load_model
from loopcoder.lsp.eval.fills import DEFAULT_MAX_TOKENS, RAW_BLOCK_STOPS, RAW_LINE_STOPS, Candidate, EditorFill, RawFill
from loopcoder.lsp.eval.runner import EvalRun, limits_for, run_eval
from loopcoder.lsp.eval.scoring import score
from loopcoder.lsp.eval.tasks import SINGLE_LINE, Task, build_tasks, parse_kinds, select

PATHS = ("editor", "raw", "llama-cpp")
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "humaneval"


class LlamaCppFill:
    """llama.cpp's greedy completion of the task's prefix text, with RawFill's stops."""

    def __init__(self, threads: int, max_tokens: int | None) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(default_model_path()), n_ctx=4096, n_threads=threads,
                         n_threads_batch=threads, verbose=False)
        self.max_tokens = max_tokens

    def __call__(self, task: Task) -> Candidate:
        stops = list(RAW_LINE_STOPS if task.kind == SINGLE_LINE else RAW_BLOCK_STOPS)
        start = time.perf_counter()
        out = self.llm.create_completion(task.prefix, max_tokens=self.max_tokens or DEFAULT_MAX_TOKENS[task.kind],
                                         temperature=0.0, repeat_penalty=1.0, stop=stops)
        choice, usage = out["choices"][0], out["usage"]
        return Candidate(choice["text"], usage["prompt_tokens"], 0, usage["completion_tokens"],
                         time.perf_counter() - start, choice["finish_reason"] or "")


def fill_for(path: str, engine, args):
    if path == "llama-cpp":
        return LlamaCppFill(args.threads, args.max_tokens)
    return (EditorFill if path == "editor" else RawFill)(engine, args.max_tokens)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, out of {', '.join(PATHS)}")
    parser.add_argument("--kinds", default="generation,single-line")
    parser.add_argument("--limit", type=int, default=None, help="tasks per kind (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--plot-to", type=Path, action="append", default=[])
    args = parser.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or any(p not in PATHS for p in paths):
        parser.error(f"--paths: choose from {', '.join(PATHS)}")

    tasks = select(build_tasks(parse_kinds(args.kinds)), args.limit, args.seed)
    torch.set_num_threads(args.threads)
    engine = load_model() if {"editor", "raw"} & set(paths) else None
    limits = limits_for(args.timeout)
    machine = machine_info()
    scores = {}
    for path in paths:
        print(f"== {path}: {len(tasks)} tasks", file=sys.stderr)
        rows = run_eval(tasks, fill_for(path, engine, args), EvalRun(f"HumanEval, default GGUF: {path}"),
                        limits=limits, out=args.out_dir / f"{path}.jsonl")
        scores[path] = score(rows)

    table = comparison_table(scores)
    heading = (f"HumanEval pass@1, {default_model_path().name}, {len(tasks)} tasks "
               f"(kinds {args.kinds}, limit {args.limit}, seed {args.seed}); {machine['date']}, "
               f"{machine['cpu']} ({machine['cpu_count']} cores), {args.threads} threads")
    print(f"\n{heading}\n\n{table}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "humaneval.md").write_text(f"{heading}\n\n{table}\n", encoding="utf-8")
    if args.plot_to:
        plot(scores, args.plot_to)
    return 0


def comparison_table(scores: dict) -> str:
    rows = []
    for path, kinds in scores.items():
        for s in kinds:
            low, high = s.interval
            rows.append([path, s.kind, f"{s.passed}/{s.total}", f"{100 * s.pass_at_1:.1f}%",
                         f"{100 * low:.1f}–{100 * high:.1f}%", f"{s.seconds / s.total:.2f}",
                         f"{s.generated_tokens / s.total:.1f}"])
    return markdown_table(["path", "kind", "passed", "pass@1", "95% CI", "s/task", "tokens/task"], rows)


def plot(scores: dict, paths: list[Path]) -> None:
    fig, ax = new_figure(8, 4.5)
    kinds = list(dict.fromkeys(s.kind for kind_scores in scores.values() for s in kind_scores))
    width = 0.8 / len(scores)
    for i, (path, kind_scores) in enumerate(scores.items()):
        by_kind = {s.kind: s for s in kind_scores}
        xs = [k + i * width for k in range(len(kinds))]
        rates = [100 * by_kind[kind].pass_at_1 for kind in kinds]
        errors = [[rate - 100 * by_kind[kind].interval[0] for kind, rate in zip(kinds, rates)],
                  [100 * by_kind[kind].interval[1] - rate for kind, rate in zip(kinds, rates)]]
        ax.bar(xs, rates, width, yerr=errors, capsize=4, label=path)
    ax.set_xticks([k + width * (len(scores) - 1) / 2 for k in range(len(kinds))], kinds)
    ax.set_ylabel("pass@1 (%), 95% Wilson interval")
    ax.set_title("HumanEval pass@1, default GGUF, greedy")
    ax.legend()
    save_figure(fig, paths)


if __name__ == "__main__":
    sys.exit(main())
