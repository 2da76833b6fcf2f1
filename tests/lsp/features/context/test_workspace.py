"""The workspace index (lsp/features/context/workspace.py): every rule on a tmp_path tree."""

from __future__ import annotations

import builtins
import logging
import os
from pathlib import Path

import pytest
from loopcoder.lsp.features.context import workspace
from loopcoder.lsp.features.context.workspace import SECRET_PATTERNS, WorkspaceIndex


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def built(root: Path, **limits) -> WorkspaceIndex:
    index = WorkspaceIndex([root], **limits)
    index.build()
    return index


def indexed(index: WorkspaceIndex, root: Path) -> set[str]:
    return {index.relative(key) for key in index.files()}


@pytest.fixture
def root(tmp_path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path.resolve()


def test_a_plain_tree_is_indexed_with_keys_texts_and_relative_paths(root):
    write(root, {"a.py": "print(1)\n", "pkg/b.py": "x = 'é'\n"})
    index = built(root)
    assert index.ready
    assert index.files() == [(root / "a.py").as_posix(), (root / "pkg" / "b.py").as_posix()]
    assert index.text(root / "pkg" / "b.py") == "x = 'é'\n"
    assert index.relative(str(root / "pkg" / "b.py")) == "pkg/b.py"
    assert index.allowed(root / "a.py") == (True, "")
    stats = index.stats()
    assert stats["files"] == 2 and stats["ready"] and stats["roots"] == [root.as_posix()]
    assert stats["bytes_cached"] == len("print(1)\n") + len("x = 'é'\n".encode()) and stats["build_seconds"] >= 0


def test_not_ready_before_a_build(root):
    write(root, {"a.py": "a\n"})
    index = WorkspaceIndex([root])
    assert not index.ready and index.files() == []
    assert index.text(root / "a.py") == "a\n"  # the rules hold without a build too


def test_gitignore_patterns_folders_and_negation(root):
    write(root, {".gitignore": "*.log\n!keep.log\nbuild/\n/top.txt\n",
                 "a.py": "", "x.log": "", "keep.log": "", "build/out.py": "", "src/build": "a file, not a folder",
                 "top.txt": "", "src/top.txt": ""})
    index = built(root)
    assert indexed(index, root) == {".gitignore", "a.py", "keep.log", "src/build", "src/top.txt"}
    assert index.allowed(root / "x.log") == (False, "ignored by .gitignore")
    assert index.allowed(root / "build" / "out.py") == (False, "ignored by .gitignore")
    assert index.stats()["skipped"]["ignored by .gitignore"] == 3  # x.log, build/ (once), top.txt


def test_a_nested_gitignore_applies_to_its_subtree_and_overrides_the_one_above(root):
    write(root, {".gitignore": "*.gen.py\n",
                 "a.gen.py": "", "lib/.gitignore": "!kept.gen.py\nlocal.py\n", "lib/kept.gen.py": "",
                 "lib/other.gen.py": "", "lib/local.py": "", "local.py": "", "lib/deep/local.py": ""})
    index = built(root)
    assert indexed(index, root) == {".gitignore", "lib/.gitignore", "lib/kept.gen.py", "local.py"}
    for name in ("lib/local.py", "lib/deep/local.py", "lib/other.gen.py", "a.gen.py"):
        assert index.allowed(root / name) == (False, "ignored by .gitignore"), name
    assert index.allowed(root / "lib" / "kept.gen.py") == (True, "")


def test_a_file_in_an_ignored_folder_cannot_be_re_included(root):
    write(root, {".gitignore": "vendor/\n!vendor/keep.py\n", "vendor/keep.py": "", "vendor/.gitignore": "!keep.py\n"})
    index = built(root)
    assert indexed(index, root) == {".gitignore"}
    assert index.allowed(root / "vendor" / "keep.py") == (False, "ignored by .gitignore")


def test_git_info_exclude_is_honoured_and_git_itself_skipped(root):
    write(root, {".git/info/exclude": "scratch.py\n", ".git/config": "[core]\n", ".git/HEAD": "ref: refs/heads/main\n",
                 "scratch.py": "", "main.py": "", ".gitignore": "!main.py\n"})
    index = built(root)
    assert indexed(index, root) == {".gitignore", "main.py"}
    assert index.allowed(root / "scratch.py") == (False, "ignored by .git/info/exclude")
    assert index.allowed(root / ".git" / "config") == (False, "git metadata")
    assert index.text(root / ".git" / "HEAD") is None


def test_a_gitignore_overrides_info_exclude(root):
    write(root, {".git/info/exclude": "*.py\n", ".gitignore": "!main.py\n", "main.py": "", "other.py": ""})
    assert indexed(built(root), root) == {".gitignore", "main.py"}


def test_a_git_file_such_as_a_worktree_pointer_is_skipped(root):
    write(root, {".git": "gitdir: /elsewhere/.git/worktrees/x\n", "a.py": ""})
    index = built(root)
    assert indexed(index, root) == {"a.py"}
    assert index.allowed(root / ".git") == (False, "git metadata")


def test_loopcoderignore_at_any_level_with_negation(root):
    write(root, {".loopcoderignore": "fixtures/\n", "fixtures/big.py": "", "sub/.loopcoderignore": "*.py\n!main.py\n",
                 "sub/main.py": "", "sub/other.py": "", "sub/notes.md": "", ".gitignore": "notes.md\n",
                 "sub/.gitignore": "!notes.md\n"})
    index = built(root)
    assert indexed(index, root) == {".loopcoderignore", ".gitignore", "sub/.loopcoderignore", "sub/.gitignore",
                                    "sub/main.py", "sub/notes.md"}
    assert index.allowed(root / "sub" / "other.py") == (False, "ignored by .loopcoderignore")
    assert index.allowed(root / "fixtures" / "big.py") == (False, "ignored by .loopcoderignore")


def test_a_loopcoderignore_overrides_the_gitignore_of_its_folder(root):
    write(root, {".gitignore": "gen.py\n", ".loopcoderignore": "!gen.py\nmain.py\n", "gen.py": "", "main.py": ""})
    index = built(root)
    assert index.allowed(root / "gen.py") == (True, "")
    assert index.allowed(root / "main.py") == (False, "ignored by .loopcoderignore")


def test_ignore_files_above_the_root_are_not_read(tmp_path, root):
    write(tmp_path, {".gitignore": "*\n"})
    write(root, {"a.py": ""})
    assert indexed(built(root), root) == {"a.py"}


SECRET_NAMES = [".env", ".env.local", ".env.production", "server.pem", "tls.key", "id_rsa", "id_rsa.pub",
                "id_ed25519", "cert.p12", "cert.pfx", ".netrc", ".npmrc", ".pypirc", "credentials", "credentials.json",
                "client_secret.json", "secrets.yaml", "MY_SECRET.txt", "ID_RSA"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secrets_are_never_read(root, name):
    write(root, {f"conf/{name}": "TOKEN=hunter2\n", "a.py": ""})
    index = built(root)
    assert indexed(index, root) == {"a.py"}
    assert index.allowed(root / "conf" / name) == (False, "secret")
    assert index.text(root / "conf" / name) is None


def test_the_secret_patterns_are_documented_constants():
    assert ".env" in SECRET_PATTERNS and "*secret*" in SECRET_PATTERNS
    assert not workspace.is_secret("environment.py") and not workspace.is_secret("keys.py")


def test_binary_large_and_non_utf8_files_are_skipped(root):
    write(root, {"a.py": "ok\n", "image.png": b"\x89PNG\r\n\x1a\n\x00\x00", "late_nul.txt": b"a" * 9000 + b"\x00",
                 "big.py": "x" * 101, "exact.py": "x" * 100, "latin1.py": "caf\xe9".encode("latin-1")})
    index = built(root, max_file_bytes=100)
    assert indexed(index, root) == {"a.py", "exact.py"}
    assert index.allowed(root / "image.png") == (False, "binary")
    assert index.allowed(root / "big.py") == (False, "too large")
    assert index.allowed(root / "latin1.py") == (False, "not UTF-8")
    # A NUL past the first 8 KiB does not make a file binary; this one is only too large here.
    assert built(root, max_file_bytes=20_000).allowed(root / "late_nul.txt") == (True, "")
    assert index.stats()["skipped"] == {"binary": 1, "too large": 2, "not UTF-8": 1}


def test_an_unreadable_file_is_skipped_with_a_log_line(root, monkeypatch, caplog):
    write(root, {"a.py": "", "locked.py": "secret sauce"})
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if os.fspath(path).endswith("locked.py"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(workspace.os, "open", refusing_open)
    with caplog.at_level(logging.INFO, logger=workspace.__name__):
        index = built(root)
    assert indexed(index, root) == {"a.py"}
    assert index.stats()["skipped"] == {"unreadable": 1}
    assert any("locked.py" in record.getMessage() and "Permission denied" in record.getMessage()
               for record in caplog.records)
    assert index.allowed(root / "locked.py") == (False, "unreadable")


def test_a_fifo_is_never_opened(root):
    write(root, {"a.py": ""})
    os.mkfifo(root / "pipe")
    index = built(root)  # opening the FIFO for reading would block here
    assert indexed(index, root) == {"a.py"}
    assert index.allowed(root / "pipe") == (False, "not a regular file")


def test_a_file_deleted_between_listing_and_reading_is_skipped(root):
    write(root, {"a.py": "", "b.py": ""})
    index = WorkspaceIndex([root])

    def delete_on_start(done, total):
        if done == 0:
            (root / "b.py").unlink()

    index.build(progress=delete_on_start)
    assert indexed(index, root) == {"a.py"}
    assert index.stats()["skipped"] == {"gone": 1}
    assert index.text(root / "b.py") is None


def test_symlink_loops_finish_and_links_leaving_the_root_are_refused(tmp_path, root):
    outside = tmp_path / "outside"
    write(outside, {"stolen.py": "SECRET = 1\n", "dir/more.py": ""})
    write(root, {"a.py": "a\n", "sub/b.py": "b\n"})
    (root / "sub" / "up").symlink_to("..")                  # a loop: sub/up/sub/up/...
    (root / "self").symlink_to("self")                      # a link to itself
    (root / "ping").symlink_to("pong")
    (root / "pong").symlink_to("ping")                      # two links to each other
    (root / "leak.py").symlink_to(outside / "stolen.py")    # a file outside
    (root / "leakdir").symlink_to(outside / "dir")          # a folder outside
    (root / "alias.py").symlink_to("sub/b.py")              # a file inside: fine
    index = built(root)
    assert indexed(index, root) == {"a.py", "sub/b.py", "alias.py"}
    assert index.text(root / "alias.py") == "b\n"
    assert index.allowed(root / "leak.py") == (False, "symlink leaves the workspace")
    assert index.text(root / "leak.py") is None
    assert index.allowed(root / "leakdir" / "more.py") == (False, "symlink leaves the workspace")
    assert index.allowed(root / "self") == (False, "broken symlink")
    skipped = index.stats()["skipped"]
    assert skipped["symlink leaves the workspace"] == 2 and skipped["symlinked folder"] == 1
    assert skipped["broken symlink"] == 3
    # A path through the looping link names the real file.
    assert index.relative(root / "sub" / "up" / "sub" / "up" / "a.py") == "a.py"
    assert index.text(root / "sub" / "up" / "a.py") == "a\n"


def test_a_link_to_a_secret_or_an_ignored_file_is_refused(root):
    write(root, {".env": "TOKEN=1\n", ".gitignore": "private/\n", "private/notes.py": "x\n"})
    (root / "config.py").symlink_to(".env")
    (root / "notes.py").symlink_to("private/notes.py")
    index = built(root)
    assert indexed(index, root) == {".gitignore"}
    assert index.allowed(root / "config.py") == (False, "secret")
    assert index.allowed(root / "notes.py") == (False, "ignored by .gitignore")


def test_nothing_outside_the_roots_is_read(tmp_path, root, monkeypatch):
    outside = tmp_path / "outside"
    write(outside, {"x.py": "", ".gitignore": "*\n"})
    write(root, {"a.py": "", ".gitignore": "*.log\n", "sub/.loopcoderignore": "x\n", ".git/info/exclude": "y\n"})
    (root / "link.py").symlink_to(outside / "x.py")
    (root / "sub" / ".gitignore").symlink_to(outside / ".gitignore")  # an ignore file leading outside
    opened: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def os_open(path, *args, **kwargs):
        opened.append(os.path.realpath(path))
        return real_os_open(path, *args, **kwargs)

    def open_(file, *args, **kwargs):
        if not isinstance(file, int):
            opened.append(os.path.realpath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(workspace.os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    index = built(root)
    for path in (outside / "x.py", root / "link.py", tmp_path / "elsewhere.py"):
        index.text(path)
        index.allowed(path)
        index.update(path)
    monkeypatch.undo()
    assert opened and all(path.startswith(str(root) + os.sep) for path in opened), opened
    assert indexed(index, root) == {"a.py", ".gitignore", "sub/.loopcoderignore"}
    assert index.allowed(outside / "x.py") == (False, "outside the workspace")
    assert index.relative(outside / "x.py") is None
    assert index.text(outside / "x.py") is None


def test_the_file_limit_keeps_the_shallowest_files_and_counts_the_rest(root):
    write(root, {"a.py": "", "b.py": "", "deep/c.py": "", "deep/deeper/d.py": "", "deep/e.py": ""})
    index = built(root, max_files=3)
    assert indexed(index, root) == {"a.py", "b.py", "deep/c.py"}
    assert index.stats()["skipped"] == {"over the file limit": 2}
    write(root, {"new.py": ""})
    index.update(root / "new.py")  # the index is full
    assert len(index.files()) == 3


def test_the_text_cache_is_bounded_and_least_recently_used(root):
    write(root, {f"f{i}.py": str(i) * 100 for i in range(10)})
    index = built(root, max_total_bytes=350)
    stats = index.stats()
    assert stats["files"] == 10 and stats["bytes_cached"] <= 350 and stats["files_cached"] == 3
    assert index.text(root / "f0.py") == "0" * 100  # read again, evicting the least recently used
    index.text(root / "f8.py")  # a hit: now the most recently used
    index.text(root / "f1.py")
    cached = list(index._cache)
    assert cached == [(root / name).as_posix() for name in ("f0.py", "f8.py", "f1.py")]
    assert index.stats()["bytes_cached"] == 300


def test_the_cache_follows_the_files_stamp(root):
    write(root, {"a.py": "old\n"})
    index = built(root)
    assert index.text(root / "a.py") == "old\n"
    (root / "a.py").write_text("new text\n")
    assert index.text(root / "a.py") == "new text\n"
    (root / "a.py").unlink()
    assert index.text(root / "a.py") is None


def test_update_adds_changes_and_drops_files(root):
    write(root, {"a.py": "a\n"})
    index = built(root)
    write(root, {"pkg/new.py": "n\n", "b.bin": b"\x00"})
    index.update(root / "pkg" / "new.py")
    index.update(root / "b.bin")
    assert indexed(index, root) == {"a.py", "pkg/new.py"}
    (root / "a.py").write_bytes(b"\x00binary now")
    index.update(str(root / "a.py"))
    assert indexed(index, root) == {"pkg/new.py"}
    assert index.text(root / "a.py") is None


def test_update_of_an_ignore_file_reindexes_its_folder(root):
    write(root, {"a.py": "", "sub/b.py": "", "sub/c.log": ""})
    index = built(root)
    assert indexed(index, root) == {"a.py", "sub/b.py", "sub/c.log"}
    write(root, {"sub/.gitignore": "*.py\n"})
    index.update(root / "sub" / ".gitignore")
    assert indexed(index, root) == {"a.py", "sub/c.log", "sub/.gitignore"}
    write(root, {"sub/.gitignore": "*.log\n"})
    index.update(root / "sub" / ".gitignore")
    assert indexed(index, root) == {"a.py", "sub/b.py", "sub/.gitignore"}


def test_update_of_a_new_folder_walks_it(root):
    write(root, {"a.py": ""})
    index = built(root)
    write(root, {"new/x.py": "", "new/deep/y.py": "", "new/.env": ""})
    index.update(root / "new")
    assert indexed(index, root) == {"a.py", "new/x.py", "new/deep/y.py"}


def test_remove_drops_a_file_or_a_folder(root):
    write(root, {"a.py": "", "pkg/b.py": "", "pkg/c/d.py": "", "pkgx.py": ""})
    index = built(root)
    (root / "a.py").unlink()
    index.remove(root / "a.py")
    assert indexed(index, root) == {"pkg/b.py", "pkg/c/d.py", "pkgx.py"}
    index.remove(root / "pkg")
    assert indexed(index, root) == {"pkgx.py"}
    assert index.stats()["bytes_cached"] == 0
    index.remove(root.parent / "elsewhere.py")  # outside: nothing happens


def test_update_of_a_deleted_folder_drops_its_files(root):
    write(root, {"a.py": "", "pkg/b.py": "", "pkg/c/d.py": ""})
    index = built(root)
    for path in (root / "pkg" / "c" / "d.py", root / "pkg" / "b.py"):
        path.unlink()
    (root / "pkg" / "c").rmdir()
    (root / "pkg").rmdir()
    index.update(root / "pkg")
    assert indexed(index, root) == {"a.py"}


def test_a_second_build_refreshes(root):
    write(root, {"a.py": "", "b.py": ""})
    index = built(root)
    (root / "a.py").unlink()
    write(root, {"c.py": ""})
    index.build()
    assert indexed(index, root) == {"b.py", "c.py"}


def test_events_during_a_build_are_replayed_on_the_new_index(root):
    write(root, {"a.py": "", "b.py": ""})
    index = WorkspaceIndex([root])

    def meanwhile(done, total):
        if done == 0:
            write(root, {"late.py": "late\n"})
            index.update(root / "late.py")
            (root / "a.py").unlink()
            index.remove(root / "a.py")

    index.build(progress=meanwhile)
    assert indexed(index, root) == {"b.py", "late.py"}


def test_progress_reports_the_start_and_the_end(root):
    write(root, {f"m{i}.py": "" for i in range(5)})
    calls = []
    WorkspaceIndex([root]).build(progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 5) and calls[-1] == (5, 5)
    assert all(0 <= done <= total == 5 for done, total in calls)


def test_a_cancelled_build_changes_nothing(root):
    write(root, {"a.py": ""})
    index = WorkspaceIndex([root])
    index.build(cancelled=lambda: True)
    assert not index.ready and index.files() == [] and index.stats()["build_seconds"] is None
    index.build()
    write(root, {"b.py": ""})
    index.build(progress=lambda done, total: None, cancelled=lambda: True)
    assert index.ready and indexed(index, root) == {"a.py"}


def test_several_roots_and_a_root_inside_another(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    write(one, {"a.py": "", "inner/b.py": ""})
    write(two, {"c.py": ""})
    index = WorkspaceIndex([one, two, one / "inner"])
    index.build()
    assert index.files() == sorted(p.resolve().as_posix() for p in (one / "a.py", one / "inner" / "b.py", two / "c.py"))
    assert index.relative(two / "c.py") == "c.py"
    assert index.relative(one / "inner" / "b.py") == "inner/b.py"  # relative to the outer root
    assert len(index.stats()["roots"]) == 2


def test_a_root_named_through_a_symlink(tmp_path, root):
    write(root, {"a.py": "a\n"})
    (tmp_path / "alias").symlink_to(root)
    index = WorkspaceIndex([tmp_path / "alias"])
    index.build()
    assert index.files() == [(root / "a.py").as_posix()]
    assert index.text(tmp_path / "alias" / "a.py") == "a\n"
    assert index.relative(tmp_path / "alias" / "a.py") == "a.py"


def test_a_build_cancelled_halfway_through_the_reading_changes_nothing(root):
    write(root, {f"m{i}.py": "" for i in range(20)})
    index = WorkspaceIndex([root])
    asked, calls = iter(range(1000)), []
    index.build(progress=lambda done, total: calls.append((done, total)),
                cancelled=lambda: next(asked) > 12)  # past the walk's questions, inside the reading
    assert calls and calls[0] == (0, 20) and (20, 20) not in calls
    assert not index.ready and index.files() == [] and index.stats()["build_seconds"] is None


def test_reads_and_events_while_a_build_runs_on_another_thread(root):
    import threading

    write(root, {f"pkg{i % 7}/m{i}.py": f"x = {i}\n" for i in range(300)})
    index = WorkspaceIndex([root])
    worker = threading.Thread(target=index.build)
    worker.start()
    for i in range(0, 300, 3):
        assert index.text(root / f"pkg{i % 7}" / f"m{i}.py") == f"x = {i}\n"
        index.update(root / f"pkg{i % 7}" / f"m{i}.py")
    worker.join()
    assert index.ready and len(index.files()) == 300


def test_update_of_info_exclude_or_a_loopcoderignore_reindexes(root):
    write(root, {".git/HEAD": "ref\n", "a.py": "", "sub/b.py": ""})
    index = built(root)
    write(root, {".git/info/exclude": "a.py\n"})
    index.update(root / ".git" / "info" / "exclude")
    assert indexed(index, root) == {"sub/b.py"}
    write(root, {"sub/.loopcoderignore": "b.py\n"})
    index.update(root / "sub" / ".loopcoderignore")
    assert indexed(index, root) == {"sub/.loopcoderignore"}
    index.update(root / ".git" / "HEAD")  # events inside .git change nothing
    index.update(root / ".git")
    assert indexed(index, root) == {"sub/.loopcoderignore"}
