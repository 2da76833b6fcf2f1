"""A git repository with a seeded SQL injection, an O(n²) loop and a style problem, made in tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

BASE_APP = '''import sqlite3


def connect():
    return sqlite3.connect("app.db")
'''
HEAD_APP = '''import os
import sqlite3


def connect():
    return sqlite3.connect("app.db")


def find_user(db, name):
    query = "SELECT * FROM users WHERE name = '" + name + "'"
    return db.execute(query).fetchall()


def common_items(a, b):
    out = []
    for x in a:
        for y in b:
            if x == y and x not in out:
                out.append(x)
    return out
'''
UNUSED_IMPORT_LINE = 1  # `import os`: ruff F401
SQL_LINE = 10  # the concatenated query: bandit B608
LOOP_LINES = (16, 19)  # the nested loops


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def init_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    git(path, "config", "commit.gpgsign", "false")
    return path


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def seeded_repo(tmp_path) -> Path:
    """main has app.py with `connect`; HEAD adds the SQL injection, the quadratic loop and an unused import."""
    repo = init_repo(tmp_path / "repo")
    (repo / "app.py").write_text(BASE_APP)
    commit_all(repo, "base")
    (repo / "app.py").write_text(HEAD_APP)
    commit_all(repo, "add find_user and common_items")
    return repo


@pytest.fixture
def awkward_repo(tmp_path) -> Path:
    """HEAD~1..HEAD renames a file (and edits it), deletes one, changes a binary file and a CRLF file."""
    repo = init_repo(tmp_path / "awkward")
    body = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(4))
    (repo / "old_name.py").write_text(body)
    (repo / "gone.py").write_text("x = 1\n")
    (repo / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (repo / "windows.py").write_bytes(b"def g():\r\n    return 2\r\n")
    commit_all(repo, "base")
    git(repo, "mv", "old_name.py", "new_name.py")
    (repo / "new_name.py").write_text(body + "def h(cmd):\n    return eval(cmd)\n")  # lines 17-18
    (repo / "gone.py").unlink()
    (repo / "blob.bin").write_bytes(b"\x00\x03\x04binary")
    (repo / "windows.py").write_bytes(b"def g():\r\n    return 2\r\n\r\n\r\ndef k(a):\r\n    return a == None\r\n")
    commit_all(repo, "rename, delete, binary, crlf")
    return repo
