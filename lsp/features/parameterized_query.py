"""The fix for SQL built from strings and passed to `execute`: a parameterized query.

`cur.execute("... name = '" + name + "'")`, `cur.execute(f"... name = '{name}'")` and
`cur.execute("... name = '%s'" % name)` become `cur.execute("... name = ?", (name,))`:
the query's string pieces joined around placeholders, the values passed as parameters.
It is a transformation of the AST, so it applies to any such call; it declines, with no
fix, wherever a placeholder could change what the code means: a value inside a longer
quoted text (`LIKE '%" + q + "%'`), a name rather than a value (`FROM " + table`), a
conversion or format spec (`{x!r}`), a query built on another line, or a file whose
database driver, and so its placeholder style (PEP 249's paramstyle), is unknown.
"""

from __future__ import annotations

import ast
import json
import re

# PEP 249 paramstyle of the drivers we recognise by their import: qmark or format.
PLACEHOLDERS = {"sqlite3": "?", "psycopg2": "%s", "psycopg": "%s", "pymysql": "%s", "MySQLdb": "%s", "mysql": "%s"}
# What a bare value may follow in SQL: a comparison, an opening parenthesis or comma (IN, VALUES), arithmetic,
# LIKE, LIMIT, OFFSET. Anything else (FROM, ORDER BY, WHERE, SELECT) takes a name or an expression, not a value.
VALUE_CONTEXT = re.compile(r"(?:[=<>(,+\-*/]|\b(?:LIKE|LIMIT|OFFSET))\s*$", re.IGNORECASE)
STRING_QUOTES = "'\""
_FORMAT_FIELD = re.compile(r"(%.)", re.DOTALL)

Piece = str | ast.expr  # a literal part of the query, or a value put into it


def parameterized(text: str, first: int, last: int) -> tuple[int, int, str] | None:
    """The fix of the first `execute` call on lines `first..last` (1-based, inclusive) whose query
    is built from strings: (first line, last line, the new text of those lines). None when
    there is no such call, the file does not parse, or no placeholder would be safe."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    placeholder = driver_placeholder(tree)
    if placeholder is None:
        return None
    for query in _execute_queries(tree):
        if first <= query.lineno and query.end_lineno <= last:
            fixed = _rewritten(text, query, placeholder)
            if fixed is not None:
                return fixed
    return None


def driver_placeholder(tree: ast.Module) -> str | None:
    """The placeholder of the one database driver `tree` imports; None for none, or drivers that disagree."""
    styles = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [node.module]
        else:
            continue
        styles |= {PLACEHOLDERS[m.split(".")[0]] for m in modules if m.split(".")[0] in PLACEHOLDERS}
    return styles.pop() if len(styles) == 1 else None


def _execute_queries(tree: ast.Module) -> list[ast.expr]:
    """The query argument of every `<cursor>.execute(query)` call without parameters, in source order."""
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "execute" and len(node.args) == 1 and not node.keywords
             and not isinstance(node.args[0], ast.Starred)]
    return [call.args[0] for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset))]


def _rewritten(text: str, query: ast.expr, placeholder: str) -> tuple[int, int, str] | None:
    pieces = query_pieces(query)
    if pieces is None or all(isinstance(p, str) for p in pieces) or not any(isinstance(p, str) for p in pieces):
        return None  # nothing built, or nothing known to be SQL
    built = with_placeholders(pieces, placeholder)
    if built is None:
        return None
    sql, values = built
    sources = [ast.get_source_segment(text, v) for v in values]
    if None in sources:
        return None
    params = f"({sources[0]},)" if len(sources) == 1 else f"({', '.join(sources)})"
    return _splice(text, query, f"{_literal(sql, _quote_of(ast.get_source_segment(text, query) or ''))}, {params}")


def query_pieces(node: ast.expr) -> list[Piece] | None:
    """The query `node` builds, as literal strings and values in order; None for a query that is not
    built here from strings (a variable), or built in a form we do not rewrite."""
    if not isinstance(node, (ast.Constant, ast.JoinedStr, ast.BinOp)):
        return None
    return _pieces(node)


def _pieces(node: ast.expr) -> list[Piece] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        pieces: list[Piece] = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                pieces.append(part.value)
            elif part.conversion != -1 or part.format_spec is not None:  # {x!r}, {x:>5}: not the plain value
                return None
            else:
                pieces.append(part.value)
        return pieces
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _pieces(node.left), _pieces(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
            and isinstance(node.left.value, str):
        return _percent_pieces(node.left.value, node.right)
    return [node]  # a value: a name, a call, a subscript...


def _percent_pieces(template: str, values: ast.expr) -> list[Piece] | None:
    """`template % values` as pieces, for `%s`, `%d` and `%%` only."""
    fields = [part for part in _FORMAT_FIELD.split(template) if part]
    wanted = sum(part in ("%s", "%d") for part in fields)
    if isinstance(values, ast.Tuple):
        given = values.elts
    elif wanted == 1 and not isinstance(values, (ast.Dict, ast.List, ast.Starred)):
        given = [values]
    else:
        return None
    if len(given) != wanted or any(isinstance(v, ast.Starred) for v in given):
        return None
    pieces: list[Piece] = []
    remaining = iter(given)
    for part in fields:
        if part in ("%s", "%d"):
            pieces.append(next(remaining))
        elif part == "%%":
            pieces.append("%")
        elif part.startswith("%"):  # %(name)s, %r, %5d: not a plain value
            return None
        else:
            pieces.append(part)
    return pieces


def with_placeholders(pieces: list[Piece], placeholder: str) -> tuple[str, list[ast.expr]] | None:
    """The query with a placeholder for each value, and the values in order; None where a value is
    part of a longer quoted text, or takes the place of a name or an expression."""
    pieces = list(pieces)
    sql, values = "", []
    for i, piece in enumerate(pieces):
        if isinstance(piece, str):
            sql += piece.replace("%", "%%") if placeholder == "%s" else piece
            continue
        quote = open_quote(sql)
        if quote:  # only a whole quoted value, '...' + value + '...', is a parameter: its quotes go
            following = pieces[i + 1] if i + 1 < len(pieces) and isinstance(pieces[i + 1], str) else ""
            if quote not in STRING_QUOTES or not sql.endswith(quote) or not following.startswith(quote):
                return None
            sql, pieces[i + 1] = sql[:-1], following[1:]
        elif not VALUE_CONTEXT.search(sql):
            return None
        sql += placeholder
        values.append(piece)
    return sql, values


def open_quote(sql: str) -> str:
    """The quote character of the quoted text `sql` ends inside; "" when it ends outside any
    (an escaped quote, '', counts twice)."""
    inside = ""
    for ch in sql:
        if inside:
            inside = "" if ch == inside else inside
        elif ch in "'\"`":
            inside = ch
    return inside


def _quote_of(source: str) -> str:
    """The quote character the query's first string literal was written with."""
    return next((ch for ch in source if ch in STRING_QUOTES), '"')


def _literal(sql: str, quote: str) -> str:
    """A Python string literal of `sql`, in the original's quotes where it can be (JSON's escapes are Python's)."""
    return json.dumps(sql, ensure_ascii=False) if quote == '"' else repr(sql)


def _splice(text: str, node: ast.expr, new: str) -> tuple[int, int, str]:
    """Lines node.lineno..node.end_lineno of `text` with `node`'s source replaced by `new`."""
    lines = text.split("\n")
    first, last = node.lineno, node.end_lineno
    head = _characters(lines[first - 1], node.col_offset)
    tail = _characters(lines[last - 1], node.end_col_offset)
    fixed = lines[first - 1][:head] + new + lines[last - 1][tail:]
    return first, last, fixed.removesuffix("\r")


def _characters(line: str, utf8_offset: int) -> int:
    """The character offset of `utf8_offset`, a byte offset into `line` as `ast` counts columns."""
    return len(line.encode("utf-8")[:utf8_offset].decode("utf-8", "replace"))
