"""Workspace index benchmark (issue 24): how long `WorkspaceIndex.build()` takes on a repository.

A synthetic repository is written to a temporary folder, deterministically (a seed): Python
sources of 0.5 to 8 KB in nested packages (up to four levels, a dozen files a folder), with
what a real checkout holds besides — a `.git` folder, a `.gitignore` at the root
(`build/`, `node_modules/`, `*.log`, `*.pyc`) and nested ones in some packages
(`generated_*.py`, with a `!` exception), ignored folders full of files, compiled `.pyc`
and PNG binaries, files over the 512 KiB limit, and a few secrets (`.env`, `*.pem`). The
repository of `--sizes`' largest size (10,000 files by default) gives the table; each size
gives a point of the plot.

Per size it measures, `--repeats` times, the median of:
  * first build: a fresh `WorkspaceIndex`, walk and read (the files were just written, so
    they come from the OS page cache: a cold disk is slower);
  * refresh: a second `build()` on the same index (the same work, the cache kept);
and, on the largest size, `text()` of every indexed file from the cache (a hit: one stat)
and `update()` of a file other than an ignore file (check and read again).

Run: python benchmarks/workspace_index.py [--sizes 1000,2500,5000,10000] [--repeats 3]
     [--plot-to PNG] [--json-out JSON]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import fmt, machine_info, markdown_table, new_figure, save_figure, write_json

from loopcoder.lsp.features.context.workspace import WorkspaceIndex

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
SOURCE_LINE = "def function_{n}(value: int) -> int:\n    return value * {n} + len('{word}')\n\n"
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")


def python_source(rng: random.Random, size: int) -> str:
    lines, n = ["import os\n\n"], 0
    while sum(map(len, lines)) < size:
        lines.append(SOURCE_LINE.format(n=n, word=rng.choice(WORDS)))
        n += 1
    return "".join(lines)


def make_repository(folder: Path, total: int, seed: int = 0) -> dict[str, int]:
    """Write `total` files under `folder`; returns how many of each kind."""
    rng = random.Random(seed)
    kinds: dict[str, int] = {}

    def put(relative: str, content: str | bytes, kind: str) -> None:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        kinds[kind] = kinds.get(kind, 0) + 1

    put(".gitignore", "build/\nnode_modules/\n*.log\n*.pyc\n", "ignore file")
    put(".git/HEAD", "ref: refs/heads/main\n", "git metadata")
    put(".git/config", "[core]\n\trepositoryformatversion = 0\n", "git metadata")
    put(".env", "API_TOKEN=not-a-real-token\n", "secret")
    put("deploy/server.pem", "-----BEGIN PRIVATE KEY-----\n", "secret")
    # Ignored folders: a node_modules and a build output, 8% of the files.
    for i in range(total * 5 // 100):
        put(f"node_modules/pkg{i // 20}/lib/index{i % 20}.js", f"module.exports = {i};\n", "ignored folder")
    for i in range(total * 3 // 100):
        put(f"build/lib/pkg{i // 30}/mod{i % 30}.py", python_source(rng, 600), "ignored folder")
    packages = [f"src/pkg{a}" for a in range(max(1, total // 400))]
    packages += [f"{p}/sub{b}" for p in list(packages) for b in range(3)]
    packages += [f"{p}/deep{c}" for p in packages[len(packages) // 4:] for c in range(2)]
    i = 0
    while sum(kinds.values()) < total:
        package = packages[i % len(packages)]
        roll = rng.random()
        if roll < 0.04:
            put(f"{package}/__pycache__/m{i}.cpython-311.pyc", b"\xa7\r\r\n\x00\x00" + rng.randbytes(2000), "ignored (*.pyc)")
        elif roll < 0.06:
            put(f"{package}/icon{i}.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(3000), "binary")
        elif roll < 0.07:
            put(f"{package}/data{i}.py", python_source(rng, 600 * 1024), "too large")
        elif roll < 0.08:
            put(f"{package}/run{i}.log", "started\n" * 50, "ignored (*.log)")
        elif roll < 0.10 and "sub" in package:
            if not (folder / package / ".gitignore").exists():
                put(f"{package}/.gitignore", "generated_*.py\n!generated_api.py\n", "ignore file")
            put(f"{package}/generated_{i}.py", python_source(rng, 2000), "ignored (nested .gitignore)")
        else:
            put(f"{package}/module{i}.py", python_source(rng, rng.randint(500, 8000)), "source")
        i += 1
    return kinds


def timed_build(index: WorkspaceIndex) -> float:
    started = time.perf_counter()
    index.build()
    return time.perf_counter() - started


def measure(folder: Path, repeats: int) -> dict:
    first, refresh, index = [], [], None
    for _ in range(repeats):
        index = WorkspaceIndex([folder])
        first.append(timed_build(index))
        refresh.append(timed_build(index))
    stats = index.stats()
    return {"first_build_s": statistics.median(first), "refresh_s": statistics.median(refresh),
            "first_build_runs_s": first, "refresh_runs_s": refresh, "stats": stats, "index": index}


def lookups(index: WorkspaceIndex) -> dict:
    keys = index.files()
    started = time.perf_counter()
    for key in keys:
        index.text(key)
    hit_us = (time.perf_counter() - started) / len(keys) * 1e6
    sources = [key for key in keys if not key.endswith("ignore")]  # an ignore file's update re-walks its folder
    sample = sources[:: max(1, len(sources) // 200)]
    started = time.perf_counter()
    for key in sample:
        index.update(key)
    update_ms = (time.perf_counter() - started) / len(sample) * 1e3
    return {"text_hit_us": hit_us, "update_ms": update_ms, "files": len(keys), "updates": len(sample)}


def plot(results: dict[int, dict], paths: list[Path]) -> None:
    fig, ax = new_figure()
    sizes = sorted(results)
    ax.plot(sizes, [results[s]["first_build_s"] for s in sizes], "o-", label="first build")
    ax.plot(sizes, [results[s]["refresh_s"] for s in sizes], "s--", label="refresh (second build)")
    for size in sizes:
        indexed = results[size]["stats"]["files"]
        ax.annotate(f"{indexed:,} indexed\n{indexed / results[size]['first_build_s']:,.0f} files/s",
                    (size, results[size]["first_build_s"]), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xlabel("files in the repository")
    ax.set_ylabel("build seconds (median)")
    ax.set_title("WorkspaceIndex.build() on a synthetic repository")
    ax.set_ylim(0, 1.3 * max(results[s]["first_build_s"] for s in sizes))
    ax.set_xlim(0, 1.15 * sizes[-1])
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, paths)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,2500,5000,10000", help="repository sizes in files, comma-separated")
    p.add_argument("--repeats", type=int, default=3, help="builds per size (the median is reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="the PNG goes here")
    p.add_argument("--plot-to", type=Path, default=None, help="also write the plot here")
    p.add_argument("--json-out", type=Path, default=None, help="also write the raw numbers here")
    args = p.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    info = machine_info() | {"loadavg_before": os.getloadavg()[0]}
    results: dict[int, dict] = {}
    kinds: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="workspace-index-") as tmp:
        for size in sizes:
            folder = Path(tmp) / f"repo{size}"
            kinds[size] = make_repository(folder, size, args.seed)
            results[size] = measure(folder, args.repeats)
            print(f"[workspace_index] {size} files: first build {results[size]['first_build_s']:.3f} s, "
                  f"refresh {results[size]['refresh_s']:.3f} s", file=sys.stderr, flush=True)
        largest = sizes[-1]
        lookup = lookups(results[largest]["index"])
    for result in results.values():
        del result["index"]

    stats = results[largest]["stats"]
    print(f"# workspace index — {info['date']}")
    print(f"CPU: {info['cpu']} ({info['cpu_count']} cores); Python {info['python']}; load average before: "
          f"{info['loadavg_before']:.2f}")
    print(f"\nrepository of {largest:,} files, written: " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds[largest].items())))
    print()
    rows = [["indexed", f"{stats['files']:,}"], ["bytes indexed", f"{stats['bytes_indexed']:,}"],
            ["bytes cached", f"{stats['bytes_cached']:,}"]]
    rows += [[f"skipped: {reason}", f"{count:,}"] for reason, count in stats["skipped"].items()]
    rows += [["first build, s (median)", fmt(results[largest]["first_build_s"], 3)],
             ["refresh, s (median)", fmt(results[largest]["refresh_s"], 3)],
             ["files/s (indexed / first build)", fmt(stats["files"] / results[largest]["first_build_s"])],
             ["text(), cache hit, µs", fmt(lookup["text_hit_us"], 1)],
             ["update() of one file, ms", fmt(lookup["update_ms"], 3)]]
    print(markdown_table(["", "value"], rows))
    print("\n(an ignored folder counts once under its reason, not its files)")
    print()
    print(markdown_table(["files", "indexed", "first build, s", "refresh, s", "files/s"],
                         [[f"{s:,}", f"{results[s]['stats']['files']:,}", fmt(results[s]["first_build_s"], 3),
                           fmt(results[s]["refresh_s"], 3), fmt(results[s]["stats"]["files"] / results[s]["first_build_s"])]
                          for s in sizes]))
    paths = [args.out_dir / "workspace_index.png"] + ([args.plot_to] if args.plot_to else [])
    plot(results, paths)
    if args.json_out:
        write_json(args.json_out, {"machine": info, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                   "written": {str(s): k for s, k in kinds.items()},
                                   "results": {str(s): r for s, r in results.items()}, "lookups": lookup})
    print("\nwrote " + ", ".join(map(str, paths + ([args.json_out] if args.json_out else []))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
