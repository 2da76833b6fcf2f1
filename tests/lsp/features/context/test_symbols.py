"""The symbol layer of completion's cross-file context (issue 24): definitions and what a prompt
shows of them, imports and the workspace files they point to, the names near the cursor, and the
per-file cache."""

import importlib.util
import os
import time
from dataclasses import replace

import pytest

from loopcoder.lsp.features.context import symbols as S
from loopcoder.lsp.features.context.symbols import (
    ImportRef, Symbol, SymbolTable, extract_symbols, imports_of, language_of, names_near, resolve_import,
)

CLIENT = '''"""A client."""
import os

TIMEOUT = 30
name: str = "x"
lower = 3


@dataclass(frozen=True)
class Client(Base):
    """Talks to the server.

    Keeps one connection.
    """

    host: str = "localhost"
    RETRIES = 3

    def __init__(self, host):
        self.host = host

    @property
    async def send(
        self,
        payload: bytes,
    ) -> int:
        """Send it.

        Returns the count."""
        secret_body_line = 1
        return secret_body_line


@cache
async def fetch(url: str,
                timeout: float = 1.0) -> bytes:
    r"""Fetch a URL
    over the network.

    Details nobody needs.
    """
    return b"body"
'''


def by_name(symbols):
    return {s.name: s for s in symbols}


def test_functions_classes_methods_and_constants_in_file_order():
    found = extract_symbols("/ws/client.py", CLIENT)
    assert [(s.name, s.kind, s.line) for s in found] == [
        ("TIMEOUT", "constant", 3), ("name", "constant", 4), ("Client", "class", 8),
        ("Client.__init__", "method", 18), ("Client.send", "method", 21), ("fetch", "function", 33)]
    assert all(s.path == "/ws/client.py" for s in found)


def test_a_class_shows_its_header_first_docstring_paragraph_fields_and_method_signatures():
    assert by_name(extract_symbols("/ws/client.py", CLIENT))["Client"].text == '''@dataclass(frozen=True)
class Client(Base):
    """Talks to the server."""
    host: str = "localhost"
    RETRIES = 3
    def __init__(self, host): ...
    @property
    async def send(self, payload: bytes) -> int: ...'''


def test_a_function_shows_decorators_its_multi_line_signature_and_the_docstring_paragraph_never_the_body():
    found = by_name(extract_symbols("/ws/client.py", CLIENT))
    assert found["fetch"].text == '''@cache
async def fetch(url: str,
                timeout: float = 1.0) -> bytes:
    r"""Fetch a URL
    over the network.
    """'''
    assert found["Client.send"].text == '''    @property
    async def send(
        self,
        payload: bytes,
    ) -> int:
        """Send it."""'''
    assert all("secret_body_line" not in s.text and "b\"body\"" not in s.text for s in found.values())
    assert found["TIMEOUT"].text == "TIMEOUT = 30" and found["name"].text == 'name: str = "x"'


def test_a_symbols_text_is_bounded():
    methods = "".join(f"    def method_{i}(self, a, b): return a\n" for i in range(100))
    long_default = "x" * 5000
    source = f"class Big:\n{methods}\ndef wide(a='{long_default}'):\n    pass\n"
    found = by_name(extract_symbols("/ws/big.py", source))
    assert len(found["Big"].text.splitlines()) == S.MAX_TEXT_LINES
    assert found["Big"].text.splitlines()[-1] == "    ..."
    assert len(found) == 102  # the class, its 100 methods, and wide
    assert max(len(line) for line in found["wide"].text.splitlines()) <= S.MAX_LINE_CHARS


@pytest.mark.parametrize("broken", ["    y = foo(x,\n", "    y = \n", '    s = "abc\n', "    return x.\n"])
def test_a_half_typed_line_keeps_the_definitions_after_it(broken):
    source = f"def a(x):\n{broken}\ndef b(q):\n    return q\n\n\nclass C:\n    def m(self): pass\n\nLIMIT = 3\n"
    found = [(s.name, s.line) for s in extract_symbols("/ws/broken.py", source)]
    assert found == [("a", 0), ("b", 3), ("C", 7), ("C.m", 8), ("LIMIT", 10)]


def test_a_half_typed_decorated_definition_stays_with_its_decorator():
    source = "def a(x):\n    y = foo(x,\n\n@decorate(1)\ndef b(q):\n    return q\n"
    found = by_name(extract_symbols("/ws/broken.py", source))
    assert found["b"].line == 3 and found["b"].text == "@decorate(1)\ndef b(q):"


@pytest.mark.parametrize("source", ["", "# only a comment\n# and another\n", "\n\n\n", "x = (", "\x00\x01"])
def test_nothing_to_find_is_an_empty_list(source):
    assert [s for s in extract_symbols("/ws/empty.py", source) if s.kind != "constant"] == []
    assert imports_of("/ws/empty.py", source) == []
    names_near("/ws/empty.py", source, len(source))


def test_non_ascii_identifiers_and_lines_after_them():
    source = "# ĉu\ndef grüße(名前: str) -> str:\n    '''Grüßt 名前.'''\n    return 名前\n\nKONSTANTE_Ä = 1\n\ndef after(): pass\n"
    found = by_name(extract_symbols("/ws/i18n.py", source))
    assert found["grüße"].line == 1 and found["grüße"].text == "def grüße(名前: str) -> str:\n    '''Grüßt 名前.'''"
    assert found["after"].line == 7
    text = "x = 1\nwert = grüße(名前)\n"
    assert names_near("/ws/i18n.py", text, len(text)) == ["名前", "grüße"]


def test_a_one_megabyte_file_and_very_long_lines():
    unit = "def f_{0}(a, b):\n    '''Doc {0}.'''\n    return a + b\n\n"
    source = "".join(unit.format(i) for i in range(16_000)) + "VALUE = '" + "z" * 200_000 + "'\n"
    assert len(source) > 1_000_000
    started = time.perf_counter()
    found = extract_symbols("/ws/huge.py", source)
    assert time.perf_counter() - started < 5  # about 50 ms alone; generous for a busy CI machine
    assert len(found) == 16_001 and found[-1].name == "VALUE" and len(found[-1].text) <= S.MAX_LINE_CHARS
    assert names_near("/ws/huge.py", source, 500_000)


def test_imports_of_every_form_in_file_order():
    source = ("import os, a.b as c\nfrom ..x.y import p, q as r\nfrom . import sub\nfrom .mod import *\n"
              "from a import (\n    one,\n    two,\n)\n\ndef f():\n    import inner.mod\n")
    assert imports_of("/ws/pkg/m.py", source) == [
        ImportRef("os", (), 0), ImportRef("a.b", (), 0, "c"), ImportRef("x.y", ("p", "q"), 2),
        ImportRef("", ("sub",), 1), ImportRef("mod", ("*",), 1), ImportRef("a", ("one", "two"), 0),
        ImportRef("inner.mod", (), 0)]
    assert imports_of("/ws/pkg/m.js", "import x from 'y'") == []


WORKSPACE = [
    "/ws/app/__init__.py", "/ws/app/core.py", "/ws/app/util/__init__.py", "/ws/app/util/text.py",
    "/ws/app/api/views.py", "/ws/app/api/__init__.py", "/ws/tools/run.py",
    "/ws/lib/src/mylib/__init__.py", "/ws/lib/src/mylib/io.py",
]


@pytest.mark.parametrize("ref, from_path, expected", [
    (ImportRef("core", ("x",), 1), "/ws/app/api/../views.py", "/ws/app/core.py"),
    (ImportRef("core", ("x",), 2), "/ws/app/api/views.py", "/ws/app/core.py"),
    (ImportRef("util", ("text",), 2), "/ws/app/api/views.py", "/ws/app/util/__init__.py"),  # a package
    (ImportRef("util.text", (), 2), "/ws/app/api/views.py", "/ws/app/util/text.py"),  # a module
    (ImportRef("", ("views",), 1), "/ws/app/api/__init__.py", "/ws/app/api/views.py"),  # from . import views
    (ImportRef("", ("missing",), 1), "/ws/app/api/views.py", "/ws/app/api/__init__.py"),  # from . import name
    (ImportRef("", ("x",), 2), "/ws/app/api/views.py", "/ws/app/__init__.py"),
    (ImportRef("app.util.text", (), 0), "/ws/tools/run.py", "/ws/app/util/text.py"),  # from an ancestor
    (ImportRef("app", ("core",), 0), "/ws/app/api/views.py", "/ws/app/__init__.py"),
    (ImportRef("mylib.io", (), 0), "/ws/tools/run.py", "/ws/lib/src/mylib/io.py"),  # a src layout
    (ImportRef("mylib", ("io",), 0), "/ws/app/core.py", "/ws/lib/src/mylib/__init__.py"),
    (ImportRef("os.path", (), 0), "/ws/app/core.py", None),  # the standard library
    (ImportRef("numpy", ("array",), 0), "/ws/app/core.py", None),  # site-packages
    (ImportRef("core", (), 9), "/ws/app/api/views.py", None),  # above the root
    (ImportRef("nothere", (), 1), "/ws/app/api/views.py", None),
])
def test_resolve_import(ref, from_path, expected):
    assert resolve_import(ref, os.path.normpath(from_path), set(WORKSPACE)) == expected


def test_resolve_import_prefers_the_closest_ancestor():
    files = ["/ws/a/b/util.py", "/ws/a/util.py", "/ws/a/c/x.py"]
    assert resolve_import(ImportRef("util", (), 0), "/ws/a/b/m.py", files) == "/ws/a/b/util.py"
    assert resolve_import(ImportRef("util", (), 0), "/ws/a/c/m.py", frozenset(files)) == "/ws/a/util.py"
    assert resolve_import(ImportRef("x", (), 1), "/ws/a//b/../c/m.py", files) == "/ws/a/c/x.py"


def test_imports_resolve_from_the_files_own_text():
    refs = imports_of("/ws/app/api/views.py", "from ..core import x\nfrom . import views\nimport json\n")
    assert [resolve_import(r, "/ws/app/api/views.py", WORKSPACE) for r in refs] == [
        "/ws/app/core.py", "/ws/app/api/views.py", None]


NEAR = '''import os
far_away_name = 1
def handle(request, *args, retries=3, **options):
    client = make_client(request.host)
    for item in items:
        total += item.size
    result = client.send(data, timeout=3)
    print(len(result), self.other, None)
    later_name(result)
'''


def test_names_near_closest_first_attribute_chains_and_no_definitions_keywords_or_builtins():
    offset = NEAR.index("data, timeout")
    # "data" starts at the cursor; a name after the cursor counts twice as far as one before it;
    # handle's parameters where they are defined, result and far_away_name where they are assigned,
    # timeout (a keyword argument), len, print, None and self are left out; request and result are
    # in for their uses (request.host, len(result)).
    assert names_near("/ws/near.py", NEAR, offset, lines=4) == [
        "data", "send", "client", "size", "item", "total", "items", "result", "host", "request", "other",
        "make_client", "later_name"]


def test_names_near_reads_only_its_window():
    offset = NEAR.index("data, timeout")
    near = names_near("/ws/near.py", NEAR, offset, lines=1)
    assert near[:3] == ["data", "send", "client"] and "make_client" not in near and "items" not in near
    assert "far_away_name" not in names_near("/ws/near.py", NEAR, offset, lines=4)
    assert names_near("/ws/near.py", NEAR, offset, lines=20)[-1] == "os"  # an imported name is a use
    assert names_near("/ws/near.py", NEAR, 10**9)[:2] == ["result", "later_name"]  # past the end: the end


def test_names_near_follows_edits_as_a_fresh_parse_would():
    text = NEAR
    for step in range(5):
        offset = text.index("data, timeout")
        text = text[:offset] + f"arg_{step}, " + text[offset:]
        offset += len(f"arg_{step}")
        assert names_near("/ws/edited.py", text, offset) == names_near(f"/ws/fresh_{step}.py", text, offset)
        assert names_near("/ws/edited.py", text, offset)[0] == f"arg_{step}"
    assert [s.name for s in extract_symbols("/ws/edited.py", text)] == ["handle"]


def test_names_near_without_a_grammar_reads_identifiers_with_a_regex():
    text = "fn helper(a) {\n  let value = compute(a.size);\n  return value.\n"
    assert names_near("/ws/x.unknown", text, len(text)) == ["value", "size", "a", "compute"]


def test_an_unsupported_extension_gives_nothing():
    assert language_of("/ws/notes.txt") is None and language_of("/ws/Makefile") is None
    assert language_of("/ws/m.py") == "python" and language_of("/ws/M.PYI") == "python"
    assert extract_symbols("/ws/notes.txt", "def f(): pass\n") == []
    assert imports_of("/ws/notes.txt", "import os\n") == []


@pytest.mark.skipif(importlib.util.find_spec("tree_sitter_javascript") is not None,
                    reason="the JavaScript grammar is installed")
def test_a_language_whose_grammar_is_missing_gives_nothing():
    assert language_of("/ws/app.js") is None
    assert extract_symbols("/ws/app.js", "function f(a) { return a; }\n") == []
    assert names_near("/ws/app.js", "const x = compute(y);\n", 10) == ["compute", "x", "y"]


def test_a_grammar_that_fails_to_load_gives_nothing(monkeypatch):
    monkeypatch.setitem(S._GRAMMARS, "go", replace(S._GRAMMARS["go"], module="tree_sitter_not_there"))
    monkeypatch.setattr(S, "_parsers", {})
    assert language_of("/ws/main.go") is None
    assert extract_symbols("/ws/main.go", "package main\nfunc main() {}\n") == []
    monkeypatch.setitem(S._GRAMMARS, "go", replace(S._GRAMMARS["go"], module="os", function="getcwd"))
    monkeypatch.setattr(S, "_parsers", {})
    assert language_of("/ws/main.go") is None  # a "grammar" that is not one


def test_the_table_extracts_once_per_text_version(monkeypatch):
    calls = []
    real = S.extract_symbols
    monkeypatch.setattr(S, "extract_symbols", lambda path, text: calls.append(path) or real(path, text))
    table = SymbolTable()
    first = table.symbols("/ws/client.py", CLIENT)
    assert table.symbols("/ws/client.py", CLIENT) == first and calls == ["/ws/client.py"]
    changed = CLIENT.replace("def fetch", "def fetch_all")
    assert "fetch_all" in [s.name for s in table.symbols("/ws/client.py", changed)]
    assert calls == ["/ws/client.py"] * 2
    assert table.define("fetch") == [] and [s.line for s in table.define("fetch_all")] == [33]
    assert table.stats() | {"names": 0} == {"files": 1, "symbols": 6, "names": 0, "hits": 1, "parses": 2,
                                           "evictions": 0, "max_files": 5000}


def test_define_finds_methods_by_their_own_name_in_a_stable_order():
    table = SymbolTable()
    table.symbols("/ws/b.py", "class Other:\n    def send(self): pass\n\ndef send(x): pass\n")
    table.symbols("/ws/a.py", CLIENT)
    assert [(s.path, s.name) for s in table.define("send")] == [
        ("/ws/a.py", "Client.send"), ("/ws/b.py", "Other.send"), ("/ws/b.py", "send")]
    assert [s.name for s in table.define("Client.send")] == ["Client.send"]
    assert table.define("nothing") == []
    table.forget("/ws/a.py")
    assert [s.path for s in table.define("send")] == ["/ws/b.py", "/ws/b.py"]
    assert table.define("Client") == [] and table.stats()["files"] == 1


def test_the_table_forgets_the_least_recently_used_file():
    table = SymbolTable(max_files=2)
    for path in ("/ws/one.py", "/ws/two.py"):
        table.symbols(path, f"def {path[4:-3]}(): pass\n")
    table.symbols("/ws/one.py", "def one(): pass\n")  # one is used again: two is the oldest now
    table.symbols("/ws/three.py", "def three(): pass\n")
    assert [s.name for s in table.define("one") + table.define("two") + table.define("three")] == ["one", "three"]
    assert table.stats()["evictions"] == 1 and table.stats()["files"] == 2


def test_symbols_are_frozen_values():
    symbol = extract_symbols("/ws/m.py", "def f(): pass\n")[0]
    assert symbol == Symbol("f", "function", "/ws/m.py", 0, "def f():")
    with pytest.raises(AttributeError):
        symbol.name = "g"


def test_windows_line_endings_give_the_same_symbols():
    unix = [(s.name, s.kind, s.line, s.text) for s in extract_symbols("/ws/client.py", CLIENT)]
    assert [(s.name, s.kind, s.line, s.text) for s in extract_symbols("/ws/crlf.py", CLIENT.replace("\n", "\r\n"))] == unix


def test_reading_a_workspace_keeps_the_edited_documents_tree(monkeypatch):
    monkeypatch.setattr(S, "_trees", type(S._trees)())
    names_near("/ws/edited.py", NEAR, 10)
    for i in range(S._TREES_KEPT * 2):
        extract_symbols(f"/ws/other_{i}.py", CLIENT)
        imports_of(f"/ws/other_{i}.py", CLIENT)
    assert [key.split("\x00")[1] for key in S._trees] == ["/ws/edited.py"]
    extract_symbols("/ws/edited.py", NEAR + "x = 1\n")  # a document being edited: its tree follows
    assert S._trees[next(iter(S._trees))][0] == (NEAR + "x = 1\n").encode()


def test_an_unclosed_string_at_the_top_of_a_large_file_still_gives_its_definitions():
    body = "".join(f"def f_{i}(a):\n    return a\n\n" for i in range(20_000))
    source = '"""An unclosed module docstring\n\n' + body
    started = time.perf_counter()
    found = extract_symbols("/ws/unclosed.py", source)
    assert time.perf_counter() - started < 5  # about 0.1 s alone: each segment parsed once
    assert len(found) == 20_000 and (found[0].name, found[0].line) == ("f_0", 2)
    assert (found[-1].name, found[-1].line) == ("f_19999", 2 + 3 * 19_999)


# Other languages, where their grammar is installed (the project's environment has only Python's:
# these skip there).
OTHER_LANGUAGES = {
    "tree_sitter_javascript": ("/ws/a.js", '''// Adds things.
export function add(a, b) {
  return a + b;
}
class Client extends Base {
  retries = 3;
  constructor(host) { this.host = host; }
  /** Sends. */
  async send(payload) {
    return 1;
  }
}
const helper = (x) => x * 2;
export const LIMIT = 10;
''', [("add", "function", 1, "// Adds things.\nexport function add(a, b)"),
      ("Client", "class", 4, "class Client extends Base {\n  retries = 3;\n  constructor(host) { ... }\n"
                             "  async send(payload) { ... }\n}"),
      ("Client.constructor", "method", 6, "constructor(host)"),
      ("Client.send", "method", 8, "/** Sends. */\nasync send(payload)"),
      ("helper", "function", 12, "const helper = (x) =>"),
      ("LIMIT", "constant", 13, "export const LIMIT = 10;")]),
    "tree_sitter_typescript": ("/ws/a.ts", '''export interface Shape {
  name: string;
  area(): number;
}
export class Circle implements Shape {
  constructor(private r: number) {}
  area(): number { return 3 * this.r; }
}
''', [("Shape", "class", 0, "export interface Shape {\n  name: string;\n  area(): number;\n}"),
      ("Shape.area", "method", 2, "area(): number"),
      ("Circle", "class", 4, "export class Circle implements Shape {\n  constructor(private r: number) { ... }\n"
                             "  area(): number { ... }\n}"),
      ("Circle.constructor", "method", 5, "constructor(private r: number)"),
      ("Circle.area", "method", 6, "area(): number")]),
    "tree_sitter_go": ("/ws/a.go", '''package main

// Server serves.
type Server struct {
	host string
}

func (s *Server) Start(port int) error {
	return nil
}
''', [("Server", "class", 3, "// Server serves.\ntype Server struct {\n\thost string\n}"),
      ("Server.Start", "method", 7, "func (s *Server) Start(port int) error")]),
    "tree_sitter_rust": ("/ws/a.rs", '''/// A point.
pub struct Point { x: i32, y: i32 }

impl Point {
    pub fn new(x: i32, y: i32) -> Self { Point { x, y } }
}

fn main() {}
''', [("Point", "class", 1, "/// A point.\npub struct Point { x: i32, y: i32 }"),
      ("Point", "class", 3, "impl Point {\n    pub fn new(x: i32, y: i32) -> Self { ... }\n}"),
      ("Point.new", "method", 4, "pub fn new(x: i32, y: i32) -> Self"),
      ("main", "function", 7, "fn main()")]),
    "tree_sitter_java": ("/ws/A.java", '''package a;
/** A client. */
public class Client {
    private final String host;
    public int send(byte[] payload) throws IOException {
        return payload.length;
    }
}
''', [("Client", "class", 2, "/** A client. */\npublic class Client {\n    private final String host;\n"
                             "    public int send(byte[] payload) throws IOException { ... }\n}"),
      ("Client.send", "method", 4, "public int send(byte[] payload) throws IOException")]),
}


@pytest.mark.parametrize("grammar", sorted(OTHER_LANGUAGES))
def test_other_languages_where_their_grammar_is_installed(grammar):
    pytest.importorskip(grammar)
    path, source, expected = OTHER_LANGUAGES[grammar]
    assert [(s.name, s.kind, s.line, s.text) for s in extract_symbols(path, source)] == expected
    assert imports_of(path, source) == []


def test_names_near_in_another_language_leaves_its_own_builtins_out():
    pytest.importorskip("tree_sitter_go")
    text = "package main\n\nfunc run(s *Server) error {\n\tn := len(s.items)\n\treturn s.Start(n)\n}\n"
    near = names_near("/ws/b.go", text, text.index("(n)"))
    assert near == ["Start", "n", "s", "items", "Server"]
    assert not {"len", "error", "run", "return", "func"} & set(near)


def test_a_src_folder_added_to_the_same_set_of_files_is_found():
    files = {"/ws/app/core.py"}
    assert resolve_import(ImportRef("mylib", (), 0), "/ws/app/core.py", files) is None
    files.add("/ws/lib/src/mylib/__init__.py")
    assert resolve_import(ImportRef("mylib", (), 0), "/ws/app/core.py", files) == "/ws/lib/src/mylib/__init__.py"


BROKEN_CLASS = '''import os


class Store:
    """Documents by URI."""

    limit: int = 10

    def __init__(self):
        self.docs = {}

    @property
    def size(self) -> int:
        return len(self.docs)

    def get(self, uri: str):
        value = compute(uri,

    def put(self, uri: str,
            text: str) -> None:
        """Keep it."""
        self.docs[uri] = text


@cache
def after(q):
    return q
'''


def test_a_half_typed_line_in_a_method_keeps_the_classs_other_methods():
    found = extract_symbols("/ws/store.py", BROKEN_CLASS)
    assert [(s.name, s.kind, s.line) for s in found] == [
        ("Store", "class", 3), ("Store.__init__", "method", 8), ("Store.size", "method", 11),
        ("Store.get", "method", 15), ("Store.put", "method", 18), ("after", "function", 24)]
    assert found[0].text == '''class Store:
    """Documents by URI."""
    limit: int = 10
    def __init__(self): ...
    @property
    def size(self) -> int: ...
    def get(self, uri: str): ...
    def put(self, uri: str, text: str) -> None: ...'''
    assert found[4].text == '    def put(self, uri: str,\n            text: str) -> None:\n        """Keep it."""'
    assert found[5].text == "@cache\ndef after(q):"


def test_a_broken_line_that_splits_into_several_error_nodes_keeps_the_decorated_definitions_after_it():
    source = ('def merge(items):\n    value = compute(a,\n    """Doc."""\n    return sorted(items, key=lambda f: f.x)\n\n\n'
              '@functools.lru_cache(maxsize=None)\ndef _version(exe: str) -> str:\n    return exe\n\n\n'
              'def _union(a, b):\n    return a + b\n')
    assert [(s.name, s.line) for s in extract_symbols("/ws/split.py", source)] == [
        ("merge", 0), ("_version", 6), ("_union", 11)]


def test_each_name_of_a_chained_assignment_is_a_constant():
    found = extract_symbols("/ws/chain.py", "A = B = 1\nc = D = 2\nE: int = 3\nG = h.x = 4\n")
    assert [(s.name, s.line, s.text) for s in found] == [
        ("A", 0, "A = B = 1"), ("B", 0, "B = 1"), ("D", 1, "D = 2"), ("E", 2, "E: int = 3"), ("G", 3, "G = h.x = 4")]


def test_a_file_tree_sitter_gives_up_on_is_read_one_definition_at_a_time():
    source = ('def daemon_args(settings):\n    return tuple(args)\n\n\n    value = compute(a,\n'
              'def connect(settings, name: str = "lsp"):\n    from a.b import C, D\n    from a.c import e\n\n'
              '    path = P(settings.socket) if settings.socket else e()\n'
              '    if served.get("path", "") != wanted or not ok(served, settings.device):\n        raise E(f"x")\n\n\n'
              'def serves(m: dict) -> bool:\n    return True\n')
    assert S._python_parse(source.encode()).root_node.type == "ERROR"  # no module node at all
    assert [(s.name, s.line) for s in extract_symbols("/ws/gave_up.py", source)] == [
        ("daemon_args", 0), ("connect", 5), ("serves", 14)]
