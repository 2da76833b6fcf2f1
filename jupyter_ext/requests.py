"""Request bodies of the extension's endpoints: parsed and checked once, here.

Every problem is an `InvalidRequestError` whose message names the field and says what
it should be; the handlers answer it with 400. Cells come as the front end sends them:
nbformat-shaped objects (`cell_type`, `source` as a string or a list of lines, and for
code cells `outputs`), of which only the text outputs are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.notebooks import CellText

CELL_TYPES = ("code", "markdown", "raw")
MAX_CELLS = 10_000


@dataclass(frozen=True)
class CellRequest:
    path: str  # the notebook, relative to the server's root: the engine session's key
    cells: list[CellText]
    index: int
    tracebacks: tuple[str, ...]  # the cell's error outputs, joined tracebacks

    @property
    def cell(self) -> CellText:
        return self.cells[self.index]


@dataclass(frozen=True)
class CompletionRequest(CellRequest):
    offset: int  # the cursor, in characters into the cell's source
    stream: bool
    multiline: bool


@dataclass(frozen=True)
class ScaffoldRequest:
    path: str
    folder: str  # relative to the notebook's directory
    description: str
    spec: Any
    force: bool
    preview: bool = False  # answer the spec and the files it would write, writing nothing


def json_body(body: bytes) -> dict:
    if not body:
        raise InvalidRequestError("the request has no body: send a JSON object")
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidRequestError(f"the request body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"the request body must be a JSON object, not {type(value).__name__}")
    return value


def notebook_path(body: dict) -> str:
    path = body.get("path")
    if not isinstance(path, str) or not path.strip():
        raise InvalidRequestError("\"path\" is missing: give the notebook's path relative to the server's root, "
                                  "e.g. \"work/analysis.ipynb\"")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise InvalidRequestError(f"\"path\" must be relative to the server's root, without '..': not {path!r}")
    return path


def cell_request(body: dict) -> CellRequest:
    path = notebook_path(body)
    cells, errors = _cells(body.get("cells"))
    index = _integer(body, "cell_index")
    if not 0 <= index < len(cells):
        raise InvalidRequestError(f"\"cell_index\" {index} is outside the notebook's {len(cells)} cells (0..{len(cells) - 1})")
    return CellRequest(path, cells, index, errors[index])


def completion_request(body: dict) -> CompletionRequest:
    base = cell_request(body)
    offset = _integer(body, "offset")
    size = len(base.cell.source)
    if not 0 <= offset <= size:
        raise InvalidRequestError(f"\"offset\" {offset} is outside cell {base.index}, which has {size} characters (0..{size})")
    return CompletionRequest(base.path, base.cells, base.index, base.tracebacks, offset,
                             _flag(body, "stream", False), _flag(body, "multiline", False))


def scaffold_request(body: dict) -> ScaffoldRequest:
    path = notebook_path(body)
    folder = body.get("folder")
    if not isinstance(folder, str) or not folder.strip():
        raise InvalidRequestError("\"folder\" is missing: name the folder for the app, inside the notebook's directory")
    pure = PurePosixPath(folder)
    if pure.is_absolute() or ".." in pure.parts or "\\" in folder:
        raise InvalidRequestError(f"\"folder\" must be inside the notebook's directory (relative, without '..'): not {folder!r}")
    description, spec = body.get("description", ""), body.get("spec")
    if not isinstance(description, str):
        raise InvalidRequestError(f"\"description\" must be a string, not {description!r}")
    if spec is None and not description.strip():
        raise InvalidRequestError("give the form as \"description\", a sentence such as \"a form to record equipment "
                                  "repairs with date, id, fault type and handler\", or as \"spec\"")
    return ScaffoldRequest(path, folder, description, spec, _flag(body, "force", False), _flag(body, "preview", False))


def _integer(body: dict, key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequestError(f"\"{key}\" must be an integer, not {value!r}")
    return value


def _flag(body: dict, key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise InvalidRequestError(f"\"{key}\" must be true or false, not {value!r}")
    return value


def _cells(value: Any) -> tuple[list[CellText], list[tuple[str, ...]]]:
    if not isinstance(value, list) or not value:
        raise InvalidRequestError("\"cells\" must be a non-empty list of the notebook's cells, "
                                  "each {\"cell_type\": \"code\", \"source\": \"...\"}")
    if len(value) > MAX_CELLS:
        raise InvalidRequestError(f"\"cells\" has {len(value)} cells, more than the {MAX_CELLS} this server reads")
    cells, errors = [], []
    for i, cell in enumerate(value):
        if not isinstance(cell, dict):
            raise InvalidRequestError(f"cells[{i}] must be an object, not {type(cell).__name__}")
        kind = cell.get("cell_type")
        if kind not in CELL_TYPES:
            raise InvalidRequestError(f"cells[{i}].cell_type must be one of {', '.join(CELL_TYPES)}, not {kind!r}")
        outputs = cell.get("outputs", [])
        if not isinstance(outputs, list):
            raise InvalidRequestError(f"cells[{i}].outputs must be a list, not {type(outputs).__name__}")
        texts = tuple(t for t in (_output_text(o) for o in outputs) if t)
        cells.append(CellText(kind, _text(cell.get("source"), f"cells[{i}].source"), texts))
        errors.append(tuple(_traceback(o) for o in outputs if isinstance(o, dict) and o.get("output_type") == "error"))
    return cells, errors


def _text(value: Any, what: str) -> str:
    """nbformat's multiline string: a string, or a list of strings to concatenate."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return "".join(value)
    raise InvalidRequestError(f"{what} must be a string or a list of strings, not {value!r:.60}")


def _output_text(output: Any) -> str:
    """The text of an output: a stream's text, a result's text/plain; "" for images, errors and the like."""
    if not isinstance(output, dict):
        return ""
    kind = output.get("output_type")
    if kind == "stream":
        return _lenient_text(output.get("text"))
    if kind in ("execute_result", "display_data"):
        data = output.get("data")
        return _lenient_text(data.get("text/plain")) if isinstance(data, dict) else ""
    return ""


def _traceback(output: dict) -> str:
    lines = output.get("traceback")
    if isinstance(lines, list) and lines and all(isinstance(x, str) for x in lines):
        return "\n".join(lines)
    return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"


def _lenient_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(x for x in value if isinstance(x, str))
    return ""
