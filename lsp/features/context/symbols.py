"""The symbol layer of cross-file completion context (issue 24): a file's definitions, its
imports and the names used near the cursor, read from its text.

    extract_symbols(path, text)   top-level functions, classes (their methods inside the class's
                                  text, and each method on its own), module constants: what a
                                  prompt shows of each, never a whole body
    imports_of / resolve_import   a Python file's imports and the workspace file each points to
    names_near(path, text, off)   the identifiers used around the cursor, closest first
    SymbolTable                   symbols of many files, cached per text version, and by name

Why tree-sitter and not jedi: one parser and one walk serve every language whose grammar is
installed (Python's is a dependency; JavaScript, TypeScript, Go, Rust and Java when their
`tree_sitter_*` package is importable); it recovers from the half-typed line an editor sends on
every keystroke and still gives the definitions around it; it never imports or executes the
user's code, needs no subprocess and no view of the user's environment; and it is fast from the
first call (a 2,000-line file parses in about 10 ms, a keystroke's reparse of it in about 1 ms).
jedi is Python only and infers from the project's environment (it reads the installed packages,
and inspects compiled modules through a subprocess of the user's interpreter), which makes its
first answers slow. Here nothing is inferred: a name is looked up by its spelling.

Unknown extensions, and languages whose grammar is missing, give empty results, never an
exception. `imports_of` reads Python only (other languages: []).

Editor-neutral (no pygls). Thread-safe: the LSP server calls in from worker threads.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib
import keyword
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Collection, Iterator

MAX_TEXT_LINES = 40  # a symbol's text is at most this many lines
MAX_LINE_CHARS = 200  # and each line at most this long ("..." ends a cut one)
AFTER_CURSOR_LINES = 3  # names_near also reads this many lines after the cursor's line
_TREES_KEPT = 16  # files whose last parse tree is kept for incremental reparsing


@dataclass(frozen=True)
class Symbol:
    name: str  # "parse_args"; "Client.send" for a method
    kind: str  # "function", "class", "method", "constant"
    path: str  # the file's key as given
    line: int  # 0-based line of the definition (its first decorator's)
    text: str  # what a prompt shows: signature, first docstring paragraph, a class's method signatures


@dataclass(frozen=True)
class ImportRef:
    """One imported module: `import a.b as c` is ImportRef("a.b", (), 0, "c"); `from ..x import
    y, z` is ImportRef("x", ("y", "z"), 2); `from a import *` is ImportRef("a", ("*",), 0)."""

    module: str  # "" for `from . import y`
    names: tuple[str, ...]  # the names imported from it (their own names, not `as` aliases)
    level: int  # the leading dots of a relative import
    alias: str = ""  # `import a.b as c`: "c"


@dataclass(frozen=True)
class _Grammar:
    name: str
    module: str  # the tree_sitter_* package
    function: str  # its function that returns the language
    functions: frozenset[str]  # node types of top-level functions
    classes: frozenset[str]  # of classes (and types, interfaces, impls)
    methods: frozenset[str]  # of methods, inside a class's body
    wrappers: frozenset[str] = frozenset()  # nodes whose `declaration` holds a definition (export)
    identifiers: frozenset[str] = frozenset({"identifier"})
    not_names: frozenset[str] = frozenset()  # keywords, builtins, the language's own types: never looked up


def _types(*names: str) -> frozenset[str]:
    return frozenset(names)


_PYTHON_NOT_NAMES = (frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
                     | {"self", "cls"})
_JS_NOT_NAMES = frozenset("""this super true false null undefined var let const function async await yield new
    typeof instanceof in of delete void return if else for while do switch case default break continue try catch
    finally throw class extends static get set import export from as console window document globalThis require
    module exports Object Array String Number Boolean Symbol Promise Map Set WeakMap JSON Math Date Error RegExp
    NaN Infinity parseInt parseFloat setTimeout clearTimeout interface type enum implements private protected
    public readonly abstract declare namespace keyof any unknown never number string boolean object void
    Record Partial Readonly Pick Omit""".split())
_GO_NOT_NAMES = frozenset("""break case chan const continue default defer else fallthrough for func go goto if
    import interface map package range return select struct switch type var true false nil iota append cap clear
    close complex copy delete imag len make max min new panic print println real recover any bool byte comparable
    complex64 complex128 error float32 float64 int int8 int16 int32 int64 rune string uint uint8 uint16 uint32
    uint64 uintptr""".split())
_RUST_NOT_NAMES = frozenset("""as async await break const continue crate dyn else enum extern false fn for if impl
    in let loop match mod move mut pub ref return self Self static struct super trait true type unsafe use where
    while Some None Ok Err Option Result Vec String Box Rc Arc println print eprintln format vec panic assert
    assert_eq todo unimplemented i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize f32 f64 bool char str""".split())
_JAVA_NOT_NAMES = frozenset("""abstract assert boolean break byte case catch char class const continue default do
    double else enum extends final finally float for goto if implements import instanceof int interface long
    native new package private protected public return short static strictfp super switch synchronized this throw
    throws transient try void volatile while true false null var record yield String Object System Integer Long
    Double Boolean Character List Map Set Override Exception RuntimeException""".split())


_JS_IDENTIFIERS = _types("identifier", "property_identifier", "shorthand_property_identifier", "type_identifier")
_TS = dict(functions=_types("function_declaration", "generator_function_declaration", "function_signature"),
           classes=_types("class_declaration", "abstract_class_declaration", "interface_declaration"),
           methods=_types("method_definition", "method_signature", "abstract_method_signature"),
           wrappers=_types("export_statement"), identifiers=_JS_IDENTIFIERS, not_names=_JS_NOT_NAMES)
_GRAMMARS = {
    "python": _Grammar("python", "tree_sitter_python", "language", _types("function_definition"),
                       _types("class_definition"), _types("function_definition"), not_names=_PYTHON_NOT_NAMES),
    "javascript": _Grammar("javascript", "tree_sitter_javascript", "language",
                           _types("function_declaration", "generator_function_declaration"),
                           _types("class_declaration"), _types("method_definition"),
                           wrappers=_types("export_statement"), identifiers=_JS_IDENTIFIERS, not_names=_JS_NOT_NAMES),
    "typescript": _Grammar("typescript", "tree_sitter_typescript", "language_typescript", **_TS),
    "tsx": _Grammar("tsx", "tree_sitter_typescript", "language_tsx", **_TS),
    "go": _Grammar("go", "tree_sitter_go", "language", _types("function_declaration", "method_declaration"),
                   _types("type_declaration"), _types("method_elem", "method_spec"),
                   identifiers=_types("identifier", "field_identifier", "type_identifier"), not_names=_GO_NOT_NAMES),
    "rust": _Grammar("rust", "tree_sitter_rust", "language", _types("function_item"),
                     _types("struct_item", "enum_item", "trait_item", "impl_item"),
                     _types("function_item", "function_signature_item"),
                     identifiers=_types("identifier", "field_identifier", "type_identifier"), not_names=_RUST_NOT_NAMES),
    "java": _Grammar("java", "tree_sitter_java", "language", _types(),
                     _types("class_declaration", "interface_declaration", "enum_declaration", "record_declaration"),
                     _types("method_declaration", "constructor_declaration"),
                     identifiers=_types("identifier", "type_identifier"), not_names=_JAVA_NOT_NAMES),
}
_EXTENSIONS = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go", ".rs": "rust", ".java": "java",
}

_lock = threading.RLock()  # tree-sitter parsers are not thread-safe; every parse holds this
_parsers: dict[str, object] = {}  # language name -> Parser, or None where the grammar is missing
_queries: dict[str, object] = {}
_trees: OrderedDict[str, tuple[bytes, object]] = OrderedDict()  # path -> (its bytes, their tree)


def _parser(language: str):
    """The cached parser of a language; None when tree-sitter or the grammar is not importable."""
    with _lock:
        if language in _parsers:
            return _parsers[language]
        parser = None
        grammar = _GRAMMARS.get(language)
        if grammar is not None:
            try:
                import tree_sitter

                lang = tree_sitter.Language(getattr(importlib.import_module(grammar.module), grammar.function)())
                parser = tree_sitter.Parser(lang)
            except Exception:  # ImportError, an incompatible grammar ABI (ValueError), a missing function
                parser = None
        _parsers[language] = parser
        return parser


def language_of(path: str) -> str | None:
    """"python", "javascript", ... from the file's extension; None when it is not one we read or its grammar is missing."""
    language = _EXTENSIONS.get(os.path.splitext(path)[1].lower())
    return language if language is not None and _parser(language) is not None else None


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # comparisons of slices run in C: log2(n) of them
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:] == b[len(b) - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _point(data: bytes, offset: int) -> tuple[int, int]:
    row = data.count(b"\n", 0, offset)
    return row, offset - (data.rfind(b"\n", 0, offset) + 1)


def _parse(path: str, language: str, data: bytes, keep: bool = True):
    """The tree of `data`; when the same path was parsed last with other bytes, the edit between
    the two (common prefix and suffix) lets tree-sitter reparse only what changed. Kept for that:
    the trees of the last _TREES_KEPT files `names_near` read (the documents being edited);
    `extract_symbols` and `imports_of` (`keep` False) bring a kept tree up to date but add none,
    so that reading a whole workspace's symbols does not push the edited documents out."""
    parser = _parser(language)
    if parser is None:
        return None
    key = f"{language}\x00{path}"
    with _lock:
        old = _trees.get(key)
        if old is None and not keep:
            return parser.parse(data)
        if old is not None and old[0] == data:
            _trees.move_to_end(key)
            return old[1]
        tree = None
        if old is not None:
            before, old_tree = old
            start = _common_prefix(before, data)
            suffix = _common_suffix(before, data, min(len(before), len(data)) - start)
            old_end, new_end = len(before) - suffix, len(data) - suffix
            old_tree = old_tree.copy()  # the old tree may still be read by another thread: edit a copy
            old_tree.edit(start, old_end, new_end, _point(before, start), _point(before, old_end),
                          _point(data, new_end))
            tree = parser.parse(data, old_tree)
        if tree is None:
            tree = parser.parse(data)
        _trees[key] = (data, tree)
        _trees.move_to_end(key)
        while len(_trees) > _TREES_KEPT:
            _trees.popitem(last=False)
        return tree


# ---------------------------------------------------------------------------------- extraction

_CONSTANT = re.compile(r"_*[A-Z][A-Z0-9_]*\Z")


def _text(data: bytes, node) -> str:
    return _decode(data[node.start_byte:node.end_byte])


def _bounded(lines: list[str]) -> str:
    lines = [line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS - 3] + "..." for line in lines]
    if len(lines) > MAX_TEXT_LINES:
        indent = lines[-1][:len(lines[-1]) - len(lines[-1].lstrip())]
        lines = lines[:MAX_TEXT_LINES - 1] + [indent + "..."]
    return "\n".join(lines)


def _indent_of(data: bytes, node) -> str:
    """The whitespace before `node` on its line (when only whitespace precedes it)."""
    line_start = data.rfind(b"\n", 0, node.start_byte) + 1
    before = _decode(data[line_start:node.start_byte])
    return before if not before.strip() else ""


def _header(data: bytes, node, body) -> str:
    """`node`'s text up to its body (Python: up to and including the ':' before the block)."""
    end = node.end_byte if body is None else body.start_byte
    colons = [child for child in node.children if child.type == ":" and child.end_byte <= end]
    if colons:  # Python's header ends at its own ':', also where the body is broken or missing
        end = colons[-1].end_byte if body is not None else colons[0].end_byte
    return _decode(data[node.start_byte:end]).rstrip()


def _one_line(header: str) -> str:
    """A multi-line signature on one line: `def f(\\n    a,\\n) -> x:` -> `def f(a) -> x:`."""
    out = ""
    for piece in (p.strip() for p in header.splitlines()):
        if not piece:
            continue
        if not out:
            out = piece
        elif piece[0] in ")]}":
            out = (out[:-1] if out.endswith(",") else out) + piece
        elif out[-1] in "([{":
            out += piece
        else:
            out += " " + piece
    return out


def _python_docstring(data: bytes, body, indent: str) -> list[str]:
    """The first paragraph of the docstring that opens `body`, as a docstring, or []."""
    if body is None or body.type != "block" or not body.named_children:
        return []
    first = body.named_children[0]
    if first.type != "expression_statement" or first.named_child_count != 1 or first.named_children[0].type != "string":
        return []
    string = first.named_children[0]
    parts = string.children
    if len(parts) < 2 or parts[0].type != "string_start" or parts[-1].type != "string_end":
        return []
    opening, closing = _text(data, parts[0]), _text(data, parts[-1])
    content = _decode(data[parts[0].end_byte:parts[-1].start_byte])
    paragraph = re.split(r"\r?\n[ \t]*\r?\n", content.strip("\r\n"), maxsplit=1)[0].rstrip()
    lines = paragraph.splitlines() or [""]
    if len(lines) == 1:
        return [indent + opening + lines[0].strip() + closing]
    return [indent + opening + lines[0].lstrip()] + lines[1:] + [indent + closing]


def _unwrap_python(node):
    """(the definition, the node its text starts at): a decorated definition starts at its first decorator."""
    if node.type == "decorated_definition":
        definition = node.child_by_field_name("definition")
        return definition, node
    return node, node


def _python_definition(data: bytes, definition, start, indent: str) -> list[str]:
    """Decorators and the header as in the file (the first line given `indent`), then the docstring."""
    body = definition.child_by_field_name("body")
    header = _decode(data[start.start_byte:definition.start_byte]) + _header(data, definition, body)
    lines = header.splitlines()
    lines[0] = indent + lines[0]
    doc_indent = _indent_of(data, body.named_children[0]) if body is not None and body.named_children else indent + "    "
    return lines + _python_docstring(data, body, doc_indent)


def _python_member_line(data: bytes, definition, start, indent: str) -> list[str]:
    """A method inside its class's text: its decorators, then its signature on one line with a `...` body."""
    body = definition.child_by_field_name("body")
    decorators = [indent + _one_line(_text(data, d)) for d in start.children if d.type == "decorator"]
    return decorators + [indent + _one_line(_header(data, definition, body)) + " ..."]


def _python_assignment(statement):
    """The assignment of a module- or class-level `NAME = ...`, `name: T = ...` or `name: T`, with its name."""
    if statement.type != "expression_statement" or statement.named_child_count != 1:
        return None, ""
    assignment = statement.named_children[0]
    if assignment.type != "assignment":
        return None, ""
    left = assignment.child_by_field_name("left")
    if left is None or left.type != "identifier":
        return None, ""
    return assignment, left


def _python_symbols(path: str, data: bytes, root, shift: int = 0, segment: bool = True) -> Iterator[Symbol]:
    """The module's symbols; `shift` is added to every line (the row where `data` starts in the
    file). A top-level node with a syntax error in it is parsed again one top-level segment at a
    time (`segment`): an unclosed bracket or string then swallows only the rest of its own
    definition, not every definition after it. What is parsed again runs from the first broken
    node to the first whole node after the last one that starts a line: tree-sitter may cut one
    broken stretch into several ERROR nodes that start and end inside definitions."""
    nodes = root.children
    broken = [i for i, node in enumerate(nodes) if node.has_error] if segment and root.has_error else []
    if segment and root.type == "ERROR":  # no module at all: tree-sitter gave up on the whole file
        yield from _python_symbols_by_segment(path, data, 0, len(data), shift)
    elif broken:
        first, after = broken[0], broken[-1] + 1
        # The region goes on to a node that starts a line and is whole: after an ERROR node tree-sitter
        # may resume inside a definition, or right after its decorators.
        while after < len(nodes) and (nodes[after].start_point[1] != 0 or nodes[after].has_error
                                      or _ends_with_decorator(data, nodes[first].start_byte, nodes[after - 1].end_byte)):
            after += 1
        yield from _python_nodes(path, data, nodes[:first], shift)
        yield from _python_symbols_by_segment(path, data, nodes[first].start_byte, nodes[after - 1].end_byte, shift)
        yield from _python_nodes(path, data, nodes[after:], shift)
    else:
        yield from _python_nodes(path, data, _top_level(root), shift)


def _ends_with_decorator(data: bytes, start: int, end: int) -> bool:
    last_line = data[start:end].rstrip().rpartition(b"\n")[2]
    return last_line.lstrip().startswith(b"@")


def _python_nodes(path: str, data: bytes, nodes, shift: int) -> Iterator[Symbol]:
    for node in nodes:
        definition, start = _unwrap_python(node)
        if definition is None:
            continue
        if definition.type == "function_definition":
            name = definition.child_by_field_name("name")
            if name is not None:
                yield Symbol(_text(data, name), "function", path, start.start_point[0] + shift,
                             _bounded(_python_definition(data, definition, start, "")))
        elif definition.type == "class_definition":
            yield from _python_class(path, data, definition, start, shift)
        else:
            assignment, left = _python_assignment(definition)
            while assignment is not None:  # `A = B = 1`: A, then B
                name = _text(data, left)
                if assignment.child_by_field_name("type") is not None or _CONSTANT.match(name):
                    lines = _decode(data[left.start_byte:definition.end_byte]).splitlines()
                    if len(lines) > 5:
                        lines = lines[:4] + ["..."]
                    yield Symbol(name, "constant", path, left.start_point[0] + shift, _bounded(lines))
                right = assignment.child_by_field_name("right")
                assignment, left = (right, right.child_by_field_name("left")) if right is not None \
                    and right.type == "assignment" else (None, None)
                if left is not None and left.type != "identifier":
                    break


def _python_class(path: str, data: bytes, definition, start, shift: int) -> Iterator[Symbol]:
    name_node = definition.child_by_field_name("name")
    if name_node is None:
        return
    class_name = _text(data, name_node)
    body = definition.child_by_field_name("body")
    lines = _python_definition(data, definition, start, "")
    methods = []
    members = body.named_children if body is not None else []
    member_indent = _indent_of(data, members[0]) if members else "    "
    for member in members:
        inner, member_start = _unwrap_python(member)
        if inner is None:
            continue
        if inner.type == "function_definition":
            method_name = inner.child_by_field_name("name")
            if method_name is None:
                continue
            lines += _python_member_line(data, inner, member_start, member_indent)
            text = _bounded(_python_definition(data, inner, member_start, _indent_of(data, member_start)))
            methods.append(Symbol(f"{class_name}.{_text(data, method_name)}", "method", path,
                                  member_start.start_point[0] + shift, text))
        elif inner.type == "class_definition":
            nested = inner.child_by_field_name("name")
            if nested is not None:
                lines.append(member_indent + _one_line(_header(data, inner, inner.child_by_field_name("body"))) + " ...")
        else:
            assignment, _ = _python_assignment(inner)
            if assignment is not None:  # a field (`name: str = ""`) or a class constant: its first line
                lines.append(member_indent + _text(data, inner).splitlines()[0])
    yield Symbol(class_name, "class", path, start.start_point[0] + shift, _bounded(lines))
    yield from methods


# Where a new statement may start after `indent`: a decorator, a def or class, an assignment (`X = `, `x: T = `).
_STATEMENT_START = rb"(?:@|async[ \t]+def[ \t]|def[ \t]|class[ \t]|[A-Za-z_]\w*[ \t]*(?::[^\n=]*)?=(?!=))"
_starts: dict[bytes, re.Pattern] = {}
_CLASS_PIECE = re.compile(rb"(?:@[^\n]*\n)*class[ \t]")


def _python_segments(data: bytes, indent: bytes = b"") -> list[int]:
    """The byte offsets where the definitions at `indent` start (a decorated one at its first
    decorator), 0 first."""
    pattern = _starts.get(indent)
    if pattern is None:
        pattern = _starts[indent] = re.compile(rb"^" + re.escape(indent) + _STATEMENT_START, re.M)
    starts = [0]
    decorators = False
    for match in pattern.finditer(data):
        head = match.group()[len(indent):]
        if decorators and (head.startswith(b"@") or not head[-1:] == b"="):
            decorators = not (head.startswith((b"def", b"async", b"class")))
            continue  # the decorators and their definition stay one segment
        decorators = head.startswith(b"@")
        if match.start() != 0:
            starts.append(match.start())
    return starts


def _python_parse(data: bytes):
    with _lock:
        return _parser("python").parse(data)


def _python_symbols_by_segment(path: str, data: bytes, start: int, end: int, shift: int) -> Iterator[Symbol]:
    """The symbols of data[start:end], each of its top-level segments parsed on its own; a broken
    class one member at a time."""
    region = data[start:end]
    starts = _python_segments(region)
    row = shift + data.count(b"\n", 0, start)
    for first, last in zip(starts, starts[1:] + [len(region)]):
        piece = region[first:last]
        tree = _python_parse(piece)
        if tree.root_node.has_error and _CLASS_PIECE.match(piece):
            yield from _python_class_by_members(path, piece, row)
        else:
            yield from _python_symbols(path, piece, tree.root_node, row, segment=False)
        row += piece.count(b"\n")


def _python_class_by_members(path: str, piece: bytes, row: int) -> Iterator[Symbol]:
    """A class with a syntax error inside: its header and docstring, then each member (at the
    indentation of the body's first line) parsed on its own, dedented."""
    body = re.search(rb"^([ \t]+)\S", piece, re.M)
    indent = body.group(1) if body else b"    "
    starts = _python_segments(piece, indent) + [len(piece)]
    head = _python_parse(piece[:starts[1]] + indent + b"...\n")
    classes = [n for n in _top_level(head.root_node) if _unwrap_python(n)[0] is not None
               and _unwrap_python(n)[0].type == "class_definition"]
    if not classes:
        yield from _python_symbols(path, piece, _python_parse(piece).root_node, row, segment=False)
        return
    definition, start = _unwrap_python(classes[0])
    class_symbol = next(_python_class(path, piece[:starts[1]] + indent + b"...\n", definition, start, row))
    lines = class_symbol.text.splitlines()
    methods = []
    member_indent = _decode(indent)
    for first, last in zip(starts[1:], starts[2:]):
        member = b"\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                            for line in piece[first:last].split(b"\n"))
        member_row = row + piece.count(b"\n", 0, first)
        for node in _top_level(_python_parse(member).root_node):
            inner, member_start = _unwrap_python(node)
            if inner is None:
                continue
            if inner.type == "function_definition" and inner.child_by_field_name("name") is not None:
                lines += _python_member_line(member, inner, member_start, member_indent)
                text = [member_indent + line for line in _python_definition(member, inner, member_start, "")]
                methods.append(Symbol(f"{class_symbol.name}.{_text(member, inner.child_by_field_name('name'))}",
                                      "method", path, member_row + member_start.start_point[0], _bounded(text)))
            elif _python_assignment(inner)[0] is not None:
                lines.append(member_indent + _text(member, inner).splitlines()[0])
    yield replace(class_symbol, text=_bounded(lines))
    yield from methods


def _top_level(root) -> Iterator:
    """The module's statements; inside an ERROR node at the top (a half-typed line can make one)
    the definitions tree-sitter recovered within it."""
    for node in root.children:
        if node.type == "ERROR":
            yield from _top_level(node)
        else:
            yield node


def _generic_name(node, data: bytes) -> str:
    for field in ("name", "type"):
        child = node.child_by_field_name(field)
        if child is not None:
            return _text(data, child)
    for child in node.named_children:  # Go: type_declaration -> type_spec name
        inner = child.child_by_field_name("name")
        if inner is not None:
            return _text(data, inner)
    return ""


def _leading_comments(data: bytes, node) -> list[str]:
    comments = []
    previous = node.prev_named_sibling
    row = node.start_point[0]
    while previous is not None and "comment" in previous.type and previous.end_point[0] >= row - 1 and len(comments) < 10:
        comments[:0] = _text(data, previous).splitlines()
        row = previous.start_point[0]
        previous = previous.prev_named_sibling
    return comments


# A class's fields in JavaScript, TypeScript and Java: shown in the class's text, a line each.
_FIELDS = frozenset({"field_definition", "public_field_definition", "property_signature", "field_declaration"})


def _generic_symbols(path: str, data: bytes, root, grammar: _Grammar) -> Iterator[Symbol]:
    """Other languages: each top-level function or class (type, interface, impl) with the comments
    right above it and its header (the text before its body); a class's text lists its fields and
    its methods' headers with `{ ... }` bodies, one with no methods (a struct, an enum) shows its
    whole text.
    JavaScript and TypeScript: also `const f = (...) => ...` functions and UPPER_CASE constants;
    Go: a method is "Type.Method"."""
    for outer in _top_level(root):
        node = outer.child_by_field_name("declaration") or outer if outer.type in grammar.wrappers else outer
        comments = _leading_comments(data, outer)
        if node.type in ("lexical_declaration", "variable_declaration"):
            yield from _js_declarations(path, data, node, outer, comments)
            continue
        if node.type not in grammar.functions and node.type not in grammar.classes:
            continue
        name = _generic_name(node, data)
        if not name:
            continue
        body = node.child_by_field_name("body")
        lines = comments + (_decode(data[outer.start_byte:node.start_byte]) + _header(data, node, body)).splitlines()
        if node.type in grammar.functions:
            receiver = _go_receiver(data, node)
            kind, name = ("method", f"{receiver}.{name}") if receiver else ("function", name)
            yield Symbol(name, kind, path, outer.start_point[0], _bounded(lines))
            continue
        members = [m for m in body.named_children if m.type in grammar.methods | _FIELDS] if body is not None else []
        if not any(m.type in grammar.methods for m in members):
            yield Symbol(name, "class", path, outer.start_point[0], _bounded(comments + _text(data, outer).splitlines()))
            continue
        lines[-1] += " {"
        methods = []
        for member in members:
            if member.type in _FIELDS:  # a field: its first line, with the `;` that follows it in JavaScript
                after = member.next_sibling
                end = after.end_byte if after is not None and after.type in (";", ",") else member.end_byte
                lines.append(_indent_of(data, member) + _decode(data[member.start_byte:end]).splitlines()[0])
                continue
            member_body = member.child_by_field_name("body")
            method_header = _header(data, member, member_body)
            lines.append(_indent_of(data, member) + _one_line(method_header) + (" { ... }" if member_body else ";"))
            method_name = _generic_name(member, data)
            if method_name:
                methods.append(Symbol(f"{name}.{method_name}", "method", path, member.start_point[0],
                                      _bounded(_leading_comments(data, member) + method_header.splitlines())))
        lines.append("}")
        yield Symbol(name, "class", path, outer.start_point[0], _bounded(lines))
        yield from methods


def _js_declarations(path: str, data: bytes, node, outer, comments: list[str]) -> Iterator[Symbol]:
    """`const f = (a) => ...` and `let g = function (a) {...}` as functions (up to their body),
    `const LIMIT = 3` as a constant (its first lines)."""
    for declarator in node.named_children:
        if declarator.type != "variable_declarator":
            continue
        name_node, value = declarator.child_by_field_name("name"), declarator.child_by_field_name("value")
        if name_node is None or name_node.type != "identifier":
            continue
        name = _text(data, name_node)
        if value is not None and value.type in ("arrow_function", "function_expression", "function",
                                                "generator_function"):
            body = value.child_by_field_name("body")
            end = body.start_byte if body is not None else value.end_byte
            header = _decode(data[outer.start_byte:end]).rstrip()
            yield Symbol(name, "function", path, outer.start_point[0], _bounded(comments + header.splitlines()))
        elif _CONSTANT.match(name):
            lines = _text(data, outer).splitlines()
            yield Symbol(name, "constant", path, outer.start_point[0],
                         _bounded(comments + (lines[:4] + ["..."] if len(lines) > 5 else lines)))


def _go_receiver(data: bytes, node) -> str:
    """The type a Go method is declared on: `func (s *Server) Start()` -> "Server"; "" for anything else."""
    receiver = node.child_by_field_name("receiver")
    stack = [receiver] if receiver is not None else []
    while stack:
        current = stack.pop()
        if current.type == "type_identifier":
            return _text(data, current)
        stack.extend(reversed(current.named_children))
    return ""


def extract_symbols(path: str, text: str) -> list[Symbol]:
    """The file's top-level functions, classes (each followed by its methods as "Class.method")
    and module constants (UPPER_CASE or annotated assignments), in file order; [] when the
    language is not read."""
    language = language_of(path)
    if language is None or not text:
        return []
    data = _encode(text)
    tree = _parse(path, language, data, keep=False)
    if tree is None:
        return []
    grammar = _GRAMMARS[language]
    if language == "python":
        return list(_python_symbols(path, data, tree.root_node))
    return list(_generic_symbols(path, data, tree.root_node, grammar))


# ------------------------------------------------------------------------------------- imports

def _dotted(data: bytes, node) -> str:
    return "".join(_text(data, node).split())


def imports_of(path: str, text: str) -> list[ImportRef]:
    """The Python file's imports, anywhere in it, in file order: `import a.b as c`, `from .x
    import y, z`, `from a import *`. Other languages: [] (not read yet)."""
    if language_of(path) != "python" or not text:
        return []
    data = _encode(text)
    tree = _parse(path, "python", data, keep=False)
    if tree is None:
        return []
    refs: list[ImportRef] = []
    for node in _import_statements(tree):
        if node.type == "import_statement":
            for child in node.children_by_field_name("name"):
                if child.type == "aliased_import":
                    module, alias = child.child_by_field_name("name"), child.child_by_field_name("alias")
                    refs.append(ImportRef(_dotted(data, module), (), 0, _text(data, alias) if alias else ""))
                else:
                    refs.append(ImportRef(_dotted(data, child), (), 0))
            continue
        module_node = node.child_by_field_name("module_name")
        if module_node is None:
            continue
        level, module = 0, ""
        if module_node.type == "relative_import":
            for part in module_node.children:
                if part.type == "import_prefix":
                    level = _text(data, part).count(".")
                elif part.type == "dotted_name":
                    module = _dotted(data, part)
        else:
            module = _dotted(data, module_node)
        names: list[str] = []
        if any(child.type == "wildcard_import" for child in node.children):
            names.append("*")
        for child in node.children_by_field_name("name"):
            inner = child.child_by_field_name("name") if child.type == "aliased_import" else child
            if inner is not None:
                names.append(_dotted(data, inner))
        refs.append(ImportRef(module, tuple(names), level))
    return refs


def _import_statements(tree) -> list:
    """The import_statement and import_from_statement nodes, in file order."""
    import tree_sitter  # importable: it parsed the tree

    with _lock:
        query = _queries.get("python-imports")
        if query is None:
            query = _queries["python-imports"] = tree_sitter.Query(
                _parser("python").language, "[(import_statement) (import_from_statement)] @import")
    captures = tree_sitter.QueryCursor(query).captures(tree.root_node)
    return sorted(captures.get("import", []), key=lambda node: node.start_byte)


def _module_file(folder: str, parts: list[str], files: Collection[str]) -> str | None:
    """`folder/a/b/__init__.py` or `folder/a/b.py` (then their .pyi stubs); no parts: the folder's own __init__."""
    base = os.path.join(folder, *parts)
    candidates = [os.path.join(base, "__init__.py"), os.path.join(base, "__init__.pyi")]
    if parts:
        candidates[1:1] = [base + ".py"]
        candidates.append(base + ".pyi")
    for candidate in candidates:
        if candidate in files:
            return candidate
    return None


_src_cache: list = [None, -1, []]  # the last collection of files scanned, its length, its src folders


def _src_folders(files: Collection[str]) -> list[str]:
    """Every folder named "src" among the files' folders that is not inside another "src" folder;
    the scan of the last collection is kept while it is the same object of the same length (the
    imports of one file resolve against one collection)."""
    with _lock:
        if _src_cache[0] is files and _src_cache[1] == len(files):
            return _src_cache[2]
    marker = f"{os.sep}src{os.sep}"
    found = set()
    for path in files:
        at = path.find(marker)
        if at >= 0:
            found.add(path[:at + 4])
    with _lock:
        _src_cache[:] = [files, len(files), sorted(found)]
        return _src_cache[2]


def resolve_import(ref: ImportRef, from_path: str, files: Collection[str]) -> str | None:
    """The workspace file (one of `files`: normalized absolute paths, as os.path.abspath gives
    them; a set is fastest) a Python import points to: the package's __init__.py or the module's
    .py (a .pyi stub after them). Relative imports count their level from the importing file's
    folder; `from . import y` with no module points to the submodule y where there is one, else
    to the package. Absolute imports are searched from each ancestor folder of the importing file
    (the closest first), then from each top-level "src" folder. None when it is not in the
    workspace (the standard library, site-packages)."""
    if not isinstance(files, (set, frozenset, dict)):
        files = set(files)
    parts = [p for p in ref.module.split(".") if p]
    folder = os.path.dirname(os.path.normpath(from_path))
    if ref.level > 0:
        for _ in range(ref.level - 1):
            parent = os.path.dirname(folder)
            if parent == folder:
                return None
            folder = parent
        if not parts:
            for name in ref.names:
                if name != "*":
                    found = _module_file(folder, name.split("."), files)
                    if found is not None:
                        return found
        return _module_file(folder, parts, files)
    if not parts:
        return None
    roots = []
    while True:
        roots.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for root in roots:
        found = _module_file(root, parts, files)
        if found is not None:
            return found
    for root in _src_folders(files):  # only when no ancestor has it: a scan of every path
        found = _module_file(root, parts, files)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------------- names near

_IDENTIFIER = re.compile(r"[^\W\d]\w*")
_DEFINING_WORD = re.compile(r"(?:def|class|function|func|fn|struct|interface|type|enum|trait)\s+\Z")
# Without a grammar, what no language would look up.
_NOT_NAMES = _PYTHON_NOT_NAMES | _JS_NOT_NAMES | _GO_NOT_NAMES | _RUST_NOT_NAMES | _JAVA_NOT_NAMES
# (parent type, field) pairs where an identifier is being defined, not used.
_DEFINING_FIELDS = {("function_definition", "name"), ("class_definition", "name"), ("keyword_argument", "name"),
                    ("default_parameter", "name"), ("typed_default_parameter", "name"), ("assignment", "left"),
                    ("for_statement", "left"), ("for_in_clause", "left"), ("aliased_import", "alias"),
                    ("named_expression", "name"), ("function_declaration", "name"), ("class_declaration", "name"),
                    ("method_definition", "name"), ("variable_declarator", "name"), ("method_declaration", "name"),
                    ("function_item", "name"), ("struct_item", "name"), ("type_spec", "name")}
_DEFINING_PARENTS = frozenset({"parameters", "lambda_parameters", "typed_parameter", "list_splat_pattern",
                               "dictionary_splat_pattern", "pattern_list", "tuple_pattern", "as_pattern_target",
                               "formal_parameters", "required_parameter", "optional_parameter", "parameter_declaration"})


def _is_definition(node) -> bool:
    parent = node.parent
    if parent is None:
        return False
    if parent.type in _DEFINING_PARENTS:
        if parent.type == "typed_parameter":  # `a: int`: the name, not the type
            return node == parent.named_children[0]
        return True
    for parent_type, field in _DEFINING_FIELDS:
        if parent.type == parent_type and parent.child_by_field_name(field) == node:
            return True
    return False


def _window(text: str, offset: int, lines: int) -> tuple[int, int]:
    """The characters of the `lines` lines before the cursor's line, that line and AFTER_CURSOR_LINES more."""
    offset = max(0, min(offset, len(text)))
    start = offset
    for _ in range(lines + 1):
        start = text.rfind("\n", 0, start)
        if start < 0:
            break
    start = 0 if start < 0 else start + 1
    end = offset
    for _ in range(AFTER_CURSOR_LINES + 1):
        end = text.find("\n", end)
        if end < 0:
            end = len(text)
            break
        end += 1
    return start, end


def names_near(path: str, text: str, offset: int, lines: int = 20) -> list[str]:
    """The identifiers used (not defined) in the `lines` lines before the cursor (a character
    offset into `text`) and the few after it, closest to the cursor first, each once; an
    attribute chain gives each of its names ("client.send" -> "send", "client"); the language's
    keywords, builtins and own types left out (Python: self and cls too). With a grammar the parse tree says which names are used and
    which defined (the tree of the file's last version is reparsed incrementally); without one, a
    regular expression finds the identifiers of the window."""
    if not text:
        return []
    start, end = _window(text, offset, lines)
    offset = max(0, min(offset, len(text)))
    language = language_of(path)
    found: list[tuple[int, int, str]] = []  # (distance to the cursor, position, name)
    not_names = _NOT_NAMES if language is None else _GRAMMARS[language].not_names
    if language is None:
        for match in _IDENTIFIER.finditer(text, start, end):
            if not _DEFINING_WORD.search(text, max(start, match.start() - 12), match.start()):
                position = match.end() if match.end() <= offset else match.start()
                found.append((_distance(offset, position), position, match.group()))
    else:
        data = _encode(text)
        tree = _parse(path, language, data)
        if tree is None:
            return []
        prefix = _encode(text[:start])
        byte_start = len(prefix)
        cursor = byte_start + len(_encode(text[start:offset]))
        byte_end = cursor + len(_encode(text[offset:end]))
        types = _GRAMMARS[language].identifiers
        for node in _nodes_in(tree.root_node, byte_start, byte_end):
            if node.type in types and not _is_definition(node):
                position = node.end_byte if node.end_byte <= cursor else node.start_byte
                found.append((_distance(cursor, position), position, _text(data, node)))
    found.sort(key=lambda item: (item[0], -item[1]))
    seen: dict[str, None] = {}
    for _, _, name in found:
        if name not in not_names and name not in seen:
            seen[name] = None
    return list(seen)


def _distance(cursor: int, position: int) -> int:
    """How far a name is from the cursor; one after it counts twice as far as one before it (what
    was just written says more about what comes next than what follows)."""
    return cursor - position if position <= cursor else 2 * (position - cursor)


def _nodes_in(root, start: int, end: int) -> Iterator:
    """The nodes that lie within [start, end), found without visiting the subtrees outside it."""
    stack = [root]
    while stack:
        node = stack.pop()
        inside = []
        for child in node.children:
            if child.end_byte <= start:
                continue
            if child.start_byte >= end:
                break
            inside.append(child)
        for child in reversed(inside):
            stack.append(child)
        for child in inside:
            if child.start_byte >= start and child.end_byte <= end:
                yield child


# --------------------------------------------------------------------------------- SymbolTable

class SymbolTable:
    """Symbols of many files, cached per file by a hash of its text; bounded (LRU over files)."""

    def __init__(self, max_files: int = 5000):
        self.max_files = max(1, max_files)
        self._files: OrderedDict[str, tuple[bytes, list[Symbol]]] = OrderedDict()  # path -> (digest, symbols)
        self._by_name: dict[str, dict[str, None]] = {}  # name (and a method's own name) -> paths
        self._lock = threading.Lock()
        self._hits = self._parses = self._evictions = 0

    def symbols(self, path: str, text: str) -> list[Symbol]:
        """The file's symbols (extract_symbols), extracted once per version of its text."""
        digest = hashlib.blake2b(_encode(text), digest_size=16).digest()
        with self._lock:
            cached = self._files.get(path)
            if cached is not None and cached[0] == digest:
                self._files.move_to_end(path)
                self._hits += 1
                return list(cached[1])
        found = extract_symbols(path, text)
        with self._lock:
            self._parses += 1
            self._drop(path)
            self._files[path] = (digest, found)
            for symbol in found:
                for key in _keys(symbol):
                    self._by_name.setdefault(key, {})[path] = None
            while len(self._files) > self.max_files:
                self._drop(next(iter(self._files)))
                self._evictions += 1
        return list(found)

    def forget(self, path: str) -> None:
        with self._lock:
            self._drop(path)

    def _drop(self, path: str) -> None:
        cached = self._files.pop(path, None)
        if cached is None:
            return
        for symbol in cached[1]:
            for key in _keys(symbol):
                paths = self._by_name.get(key)
                if paths is not None:
                    paths.pop(path, None)
                    if not paths:
                        del self._by_name[key]

    def define(self, name: str) -> list[Symbol]:
        """Every cached symbol named `name` ("send" finds the method "Client.send" too), by path then line."""
        with self._lock:
            paths = sorted(self._by_name.get(name, ()))
            return [s for p in paths for s in self._files[p][1] if name in _keys(s)]

    def stats(self) -> dict:
        with self._lock:
            return {"files": len(self._files), "symbols": sum(len(s) for _, s in self._files.values()),
                    "names": len(self._by_name), "hits": self._hits, "parses": self._parses,
                    "evictions": self._evictions, "max_files": self.max_files}


def _keys(symbol: Symbol) -> tuple[str, ...]:
    own = symbol.name.rpartition(".")[2]
    return (symbol.name,) if own == symbol.name else (symbol.name, own)
