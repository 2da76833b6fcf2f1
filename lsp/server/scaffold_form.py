"""The loopcoder.scaffoldForm command: a form app from a sentence or a spec (`lsp/features/scaffold/`),
written into a folder of the workspace through workspace/applyEdit."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from loopcoder.engine.errors import InvalidRequestError, LoopcoderError
from loopcoder.lsp.features import scaffold
from loopcoder.lsp.features.scaffold import launch
from loopcoder.lsp.server.state import LoopcoderServer
from loopcoder.lsp.server.window import Progress


async def scaffold_command(ls: LoopcoderServer, *args) -> dict:
    """loopcoder.scaffoldForm {description, target, spec?, force?, preview?}: write a form app into the folder
    `target` (a URI or a path) with workspace/applyEdit: CreateFile and TextDocumentEdit operations.

    With "preview": true nothing is written: the answer is the spec (and its `summary`, the lines to show
    for confirmation) and the files it would write; the editor confirms by calling again with that `spec`,
    so the model is not asked twice and the app written is the spec the user saw."""
    arg = _scaffold_argument(args)
    folder = _scaffold_folder(ls, arg["target"])
    force, preview = arg.get("force", False), arg.get("preview", False)
    if not preview:
        _check_creates_files(ls)
    # The file names are fixed: refuse a full folder before any model work (and before a preview is confirmed).
    scaffold.check_folder(folder, force)
    settings, description, spec = ls.settings, arg.get("description", ""), arg.get("spec")
    ticket = ls.requests.begin(f"scaffold:{folder}")
    async with Progress(ls, "loopcoder: designing the form", scaffold.MAX_NEW_TOKENS) as progress:
        app = await ls.in_worker(ticket, lambda: scaffold.build(description, spec, lambda: ls.engine.get(settings),
                                                                ticket.cancelled, progress.tokens))
    if force:  # over an app already there: its next revision, its records checked and kept
        app, _ = await ls.in_worker(ticket, lambda: scaffold.over_existing(folder, app))
    paths = scaffold.planned_paths(folder, app.files, force)
    if preview:
        return {"preview": True, "folder": folder.as_uri(), "files": [p.as_uri() for p in paths],
                "spec": app.spec.as_json(), "summary": scaffold.spec_summary(app.spec), "repairs": app.repairs,
                "notes": list(app.notes), "run": launch.manual_commands(folder), "api": scaffold.API}
    changes: list = []
    for path, text in zip(paths, app.files.values()):
        uri = path.as_uri()
        changes.append(types.CreateFile(uri=uri, options=types.CreateFileOptions(overwrite=force, ignore_if_exists=False)))
        changes.append(types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None),
            edits=[types.TextEdit(range=types.Range(start=types.Position(line=0, character=0),
                                                    end=types.Position(line=0, character=0)), new_text=text)]))
    response = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
        edit=types.WorkspaceEdit(document_changes=changes), label=f"loopcoder: scaffold {app.spec.title}"))
    return {"applied": bool(response.applied), "failureReason": response.failure_reason, "folder": folder.as_uri(),
            "files": [p.as_uri() for p in paths], "run": launch.manual_commands(folder), "api": scaffold.API,
            "spec": app.spec.as_json(), "repairs": app.repairs, "notes": list(app.notes)}


def _scaffold_argument(args: tuple) -> dict:
    command = "loopcoder.scaffoldForm"
    if len(args) != 1 or not isinstance(args[0], dict):
        raise InvalidRequestError(f"{command} takes one argument, an object like "
                                  "{\"description\": \"a form to ...\", \"target\": \"file:///folder\"}")
    arg = args[0]
    if not isinstance(arg.get("target"), str) or not arg["target"].strip():
        raise InvalidRequestError(f"{command}: the argument needs \"target\", the app's folder as a URI or a path")
    has_spec = arg.get("spec") is not None
    if not has_spec and (not isinstance(arg.get("description"), str) or not arg["description"].strip()):
        raise InvalidRequestError(f"{command}: the argument needs \"description\", the form in a sentence "
                                  "(or \"spec\", a form spec)")
    for flag in ("force", "preview"):
        if flag in arg and not isinstance(arg[flag], bool):
            raise InvalidRequestError(f"{command}: \"{flag}\" must be true or false, not {arg[flag]!r}")
    return arg


def _scaffold_folder(ls: LoopcoderServer, target: str) -> Path:
    """The target folder as a path; inside the workspace when the client named one."""
    if "://" in target:
        if not target.startswith("file://"):
            raise InvalidRequestError(f"loopcoder.scaffoldForm: the target must be a file:// URI or a path, not {target!r}")
        target = to_fs_path(target) or ""
    folder = scaffold.target_folder(target)
    roots = [Path(p) for p in (to_fs_path(f.uri) for f in ls.workspace.folders.values()) if p]
    if not roots and ls.workspace.root_path:
        roots = [Path(ls.workspace.root_path)]
    if roots and not any(folder.resolve().is_relative_to(root.resolve()) for root in roots):
        raise scaffold.ScaffoldTargetError(f"loopcoder.scaffoldForm: {folder} is outside the workspace "
                                           f"({', '.join(str(r) for r in roots)}); choose a folder inside it")
    return folder


def _check_creates_files(ls: LoopcoderServer) -> None:
    caps = ls.client_capabilities.workspace
    edit = caps.workspace_edit if caps is not None else None
    # Resource operations exist only inside documentChanges, so "create" implies them (Neovim lists only that).
    if edit is None or types.ResourceOperationKind.Create not in (edit.resource_operations or []):
        raise LoopcoderError("this editor cannot create files through workspace/applyEdit (its workspaceEdit "
                             "capabilities lack the \"create\" resource operation): run "
                             "`loopcoder scaffold \"DESCRIPTION\" --out DIR` in a terminal instead")
