"""Repository context in a completion prompt: the other files' snippets, then the current file's path,
before the document (docs/context.md, "Prompt formats").

Three formats, chosen from the model's vocabulary:

    qwen       <|repo_name|>NAME\\n<|file_sep|>a/b.py\\nTEXT\\n<|file_sep|>cur.py\\n   then the FIM prompt
               (Qwen2.5-Coder's repository-level format; its tokens are single special tokens)
    starcoder  <repo_name>NAME<file_sep>a/b.py\\nTEXT\\n<file_sep>cur.py\\n           then the FIM prompt
               (StarCoder2's; SmolLM2's vocabulary has the same tokens)
    comments   # a/b.py\\nTEXT\\n\\n# cur.py\\n   in the current file's comment syntax, at the start of
               the code before the cursor (every other model)

The context goes first so that it stays inside the document's warm K/V: the engine's chained
block hashes reuse every page up to the first changed token, and the context changes far
less often than the code at the cursor. Snippet text is encoded as plain text: a file that
contains "<|file_sep|>" cannot inject the marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from loopcoder.engine.tokenizer import Tokenizer

REPO_TOKENS = {"qwen": ("<|repo_name|>", "<|file_sep|>"), "starcoder": ("<repo_name>", "<file_sep>")}
FORMATS = (*REPO_TOKENS, "comments")

# Line-comment markers by file extension; "#" for anything else (shell, Python, YAML, TOML, R, ...).
_SLASHES = {"c", "h", "cc", "cpp", "cxx", "hpp", "hh", "cs", "java", "js", "jsx", "mjs", "cjs", "ts", "tsx", "go", "rs",
            "swift", "kt", "kts", "scala", "dart", "php", "groovy", "gradle", "proto", "zig", "v", "sol", "jsonc"}
_DASHES = {"sql", "lua", "hs", "elm", "ada", "adb"}
_PERCENT = {"tex", "m", "erl", "hrl"}
_SEMICOLON = {"lisp", "clj", "cljs", "el", "scm", "rkt", "asm", "s"}


def comment_marker(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower().lstrip(".")
    if suffix in _SLASHES:
        return "//"
    if suffix in _DASHES:
        return "--"
    if suffix in _PERCENT:
        return "%"
    if suffix in _SEMICOLON:
        return ";"
    return "#"


@dataclass(frozen=True)
class ContextFile:
    path: str  # relative POSIX path, as the prompt shows it
    text: str  # what of it the prompt holds (signatures, a chunk): never empty


@dataclass(frozen=True)
class RepoContext:
    repo: str  # the workspace's name (its folder's)
    path: str  # the current file's relative path
    files: tuple[ContextFile, ...]  # in prompt order


def repo_format(tokenizer: Tokenizer, forced: str | None = None) -> str:
    """The format this tokenizer's vocabulary supports (`forced` if given: a setting)."""
    if forced is not None:
        if forced not in FORMATS:
            raise ValueError(f"repository context format {forced!r}: use one of {', '.join(FORMATS)}")
        if forced in REPO_TOKENS and not all(tokenizer.token_to_id(t) is not None for t in REPO_TOKENS[forced]):
            raise ValueError(f"this model's vocabulary lacks the {forced} format's tokens {' '.join(REPO_TOKENS[forced])}")
        return forced
    for name, tokens in REPO_TOKENS.items():
        if all(tokenizer.token_to_id(t) is not None for t in tokens):
            return name
    return "comments"


@dataclass(frozen=True)
class ContextIds:
    """A context's ids, split by where they go: `before` ahead of the FIM markers (after any BOS),
    `lead` at the start of the code before the cursor."""

    before: list[int]
    lead: list[int]

    def __len__(self) -> int:
        return len(self.before) + len(self.lead)


def context_ids(tokenizer: Tokenizer, context: RepoContext, fmt: str) -> ContextIds:
    """The ids `context` puts into a prompt in format `fmt`."""
    plain = lambda text: tokenizer.encode(text, parse_special=False)  # noqa: E731
    if fmt in REPO_TOKENS:
        repo_token, sep = (tokenizer.token_to_id(t) for t in REPO_TOKENS[fmt])
        newline = "\n" if fmt == "qwen" else ""
        ids = [repo_token, *plain(context.repo + newline)]
        for f in context.files:
            ids += [sep, *plain(f"{f.path}\n{f.text.rstrip()}\n")]
        ids += [sep, *plain(f"{context.path}\n")]
        return ContextIds(ids, [])
    marker = comment_marker(context.path)
    text = "".join(f"{comment_marker(f.path)} {f.path}\n{f.text.rstrip()}\n\n" for f in context.files)
    return ContextIds([], plain(f"{text}{marker} {context.path}\n"))
