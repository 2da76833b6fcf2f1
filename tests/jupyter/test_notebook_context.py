"""The text a completion in a notebook cell sees, rendered from the cells the front end sends."""

import pytest
from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.notebooks import CELL_SEPARATOR, CellText, notebook_context
from loopcoder.lsp.features.tracebacks import MAX_TRACEBACK_CHARS, plain_traceback

CELLS = [
    CellText("markdown", "# Load the data\nfrom a CSV file"),
    CellText("code", "import pandas as pd\ndf = pd.read_csv('x.csv')", ("Rows: 3\n",)),
    CellText("raw", "not code"),
    CellText("code", "df.hea"),
]


def test_cells_above_in_order_markdown_and_outputs_as_comments():
    context = notebook_context("nb.ipynb", CELLS, 3)
    assert context.key == "nb.ipynb"
    assert context.text == ("# # Load the data\n# from a CSV file" + CELL_SEPARATOR
                            + "import pandas as pd\ndf = pd.read_csv('x.csv')\n# Out: Rows: 3" + CELL_SEPARATOR
                            + "df.hea")
    assert context.text[context.offset:] == "df.hea"


def test_outputs_left_out_when_asked_and_long_ones_cut():
    assert "# Out:" not in notebook_context("nb", CELLS, 3, include_outputs=False).text
    long = [CellText("code", "print(x)", ("line\n" * 200,)), CellText("code", "")]
    text = notebook_context("nb", long, 1, max_output_chars=50).text
    assert text.count("# Out: line") == 10 and "# Out: ..." in text
    one_long_line = [CellText("code", "print(x)", ("x" * 500,)), CellText("code", "")]
    assert "# Out" not in notebook_context("nb", one_long_line, 1, max_output_chars=50).text


def test_the_text_before_a_cell_depends_only_on_the_cells_above():
    typed = CELLS[:3] + [CellText("code", "df.head()\nprint(df)")]
    before, after = notebook_context("nb", CELLS, 3), notebook_context("nb", typed, 3)
    assert before.text[: before.offset] == after.text[: after.offset]


def test_bad_cells_are_refused():
    with pytest.raises(InvalidRequestError, match="outside the notebook"):
        notebook_context("nb", CELLS, 4)
    with pytest.raises(InvalidRequestError, match="cell 0 is a markdown cell"):
        notebook_context("nb", CELLS, 0)


def test_tracebacks_lose_colour_codes_and_keep_their_end():
    assert plain_traceback("\x1b[0;31mNameError\x1b[0m: name 'x' is not defined") == "NameError: name 'x' is not defined"
    long = "\n".join(f"frame {i}" for i in range(2000)) + "\nValueError: bad"
    cut = plain_traceback(long)
    assert cut.startswith("...\n") and cut.endswith("ValueError: bad") and len(cut) <= MAX_TRACEBACK_CHARS + 4
