"""Reading the change set: git ranges, diff files (renames, deletions, binary files, CRLF), whole files."""

import pytest

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.ci_review import context, diff

from .conftest import HEAD_APP, LOOP_LINES, SQL_LINE, git


def test_git_range_gives_the_new_lines_of_the_head(seeded_repo):
    changes = diff.from_git("HEAD~1..HEAD", seeded_repo)
    [changed] = changes.files
    assert changed.path == "app.py" and changed.text == HEAD_APP
    assert SQL_LINE in changed.added and 1 in changed.added
    assert changes.commit == git(seeded_repo, "rev-parse", "HEAD").strip()
    for hunk in changed.hunks:
        assert all(hunk.first <= n <= hunk.last for n in hunk.added)


def test_three_dot_range_and_an_open_head(seeded_repo):
    three_dots = diff.from_git("HEAD~1...HEAD", seeded_repo).files[0].added
    assert three_dots == diff.from_git("HEAD~1..", seeded_repo).files[0].added


def test_renames_deletions_binary_files_and_crlf_do_not_crash(awkward_repo):
    changes = diff.from_git("HEAD~1..HEAD", awkward_repo)
    paths = {f.path: f for f in changes.files}
    assert set(paths) == {"new_name.py", "windows.py"}  # the deleted and the binary file have no new lines
    assert paths["new_name.py"].added == {17, 18}
    assert "rename from old_name.py" in git(awkward_repo, "diff", "-M", "HEAD~1..HEAD")
    assert paths["windows.py"].added == {3, 4, 5, 6}
    assert all("\r" not in line.text for f in changes.files for h in f.hunks for line in h.lines)


def test_a_diff_file_saved_with_crlf_line_ends(awkward_repo):
    text = git(awkward_repo, "diff", "-M", "HEAD~1..HEAD")
    crlf = text.replace("\r\n", "\n").replace("\n", "\r\n")
    assert [(p, [h.added for h in hunks]) for p, hunks in diff.parse_diff(crlf)] == \
           [(p, [h.added for h in hunks]) for p, hunks in diff.parse_diff(text)]


def test_empty_diff_and_a_rename_only_diff_have_no_files(tmp_path):
    assert diff.from_diff("", tmp_path).files == []
    rename_only = ("diff --git a/x.py b/y.py\nsimilarity index 100%\nrename from x.py\nrename to y.py\n")
    assert diff.parse_diff(rename_only) == []


def test_text_that_is_not_a_diff_is_an_error(tmp_path):
    with pytest.raises(InvalidRequestError, match="no unified diff"):
        diff.from_diff("hello, this is a letter\n", tmp_path)
    with pytest.raises(InvalidRequestError, match="not a unified diff"):
        diff.parse_diff("--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-a\n")


def test_bad_git_ranges_and_directories_are_errors(seeded_repo, tmp_path):
    with pytest.raises(InvalidRequestError, match="not a commit"):
        diff.from_git("main..no-such-branch", seeded_repo)
    with pytest.raises(InvalidRequestError, match="wants a range"):
        diff.from_git("HEAD", seeded_repo)
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidRequestError, match="not inside a git repository"):
        diff.from_git("HEAD~1..HEAD", tmp_path / "plain")


def test_whole_files_and_directories(seeded_repo):
    (seeded_repo / "notes.bin").write_bytes(b"\xff\xfe")
    changes = diff.from_paths([seeded_repo], seeded_repo)
    assert [f.path for f in changes.files] == ["app.py"]
    assert changes.files[0].added == set(range(1, len(HEAD_APP.splitlines()) + 1))
    with pytest.raises(InvalidRequestError, match="does not exist"):
        diff.from_paths([seeded_repo / "missing.py"], seeded_repo)
    with pytest.raises(InvalidRequestError, match="not a UTF-8 text file"):
        diff.from_paths([seeded_repo / "notes.bin"], seeded_repo)


def test_context_is_the_enclosing_function_and_the_imports(seeded_repo):
    [changed] = diff.from_git("HEAD~1..HEAD", seeded_repo).files
    hunk = next(h for h in changed.hunks if LOOP_LINES[0] in h.added)
    shown = context.hunk_context("app.py", changed.text, diff.Hunk("app.py", 16, 17, hunk.lines))
    assert shown.scope == "function common_items" and (shown.first, shown.last) == (14, 20)
    assert shown.imports == ["import os", "import sqlite3"]


def test_context_falls_back_to_a_window(tmp_path):
    text = "\n".join(f"line {i}" for i in range(1, 101)) + "\n"
    hunk = diff.Hunk("x.txt", 50, 50, (diff.DiffLine("+", 50, "line 50"),))
    shown = context.hunk_context("x.txt", text, hunk)
    assert (shown.first, shown.last) == (50 - context.WINDOW, 50 + context.WINDOW) and shown.imports == []
    broken = "import os\ndef f(:\n" + text
    assert context.hunk_context("x.py", broken, hunk).imports == ["import os"]  # no ast: the line pattern finds it
    js = "import fs from 'fs';\nconst x = require('y');\n" + text
    assert context.hunk_context("x.js", js, hunk).imports == ["import fs from 'fs';", "const x = require('y');"]
