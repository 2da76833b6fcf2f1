"""An app already in the target folder: its manifest, its history of specs, and whether its
records survive a new spec. Used by `--change`, and by every path that writes an app over
one (`--spec ... --force`, the LSP command and the Jupyter endpoint with force), so a
database is always migrated, never left behind a new model."""

from __future__ import annotations

import json
from pathlib import Path

from loopcoder.engine.errors import InvalidRequestError

from .migrations import Revision, load_history
from .records import DATABASE, check_records
from .render import MANIFEST
from .spec import FormSpec, load_spec


def read_manifest(path: Path) -> dict:
    """An app's manifest (loopcoder-scaffold.json), checked to be one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequestError(f"{path} does not exist: give the app's {MANIFEST}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidRequestError(f"cannot read the manifest {path}: {e}") from None
    if not isinstance(data, dict) or data.get("generator") != "loopcoder scaffold" or "spec" not in data:
        raise InvalidRequestError(f"{path} is not the manifest of an app `loopcoder scaffold` wrote")
    return data


def existing_history(folder: Path) -> list[Revision] | None:
    """The history of the app already in `folder`, or None when there is none (or the manifest
    there is not one of ours: it is overwritten as any file would be)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = read_manifest(path)
        return load_history(data, load_spec(data["spec"]).spec)
    except InvalidRequestError:
        return None


def check_app_records(folder: Path, before: FormSpec, after: FormSpec, force: bool) -> list[str]:
    """Refuse (InvalidRequestError) a new spec the app's records cannot survive, or one that loses
    values without `force`; otherwise the lines to tell the user (what is lost, how many records fit)."""
    check = check_records(folder / DATABASE, before, after)
    if check.problems:
        raise InvalidRequestError(f"nothing was changed: {len(check.problems)} problem(s) with the {check.records} "
                                  f"record(s) in {folder / DATABASE}: " + "; ".join(check.problems))
    if check.losses and not force:
        raise InvalidRequestError("nothing was changed: the change would lose values: " + "; ".join(check.losses)
                                  + ". Pass --force to remove them anyway (the app copies the database to "
                                  f"{DATABASE}.before-<revision>.bak first)")
    told = [f"removed with its values (--force): {loss}" for loss in check.losses]
    if check.records:
        told.append(f"{check.records} record(s) in {folder / DATABASE} fit the new spec")
    return told
