"""Low-code form scaffolding: one sentence to a running form app (issue 7; docs/scaffold.md).

    sentence --read (sentence.py, lexicon.json)--> form spec --jinja2--> SQLite DDL, SQLAlchemy model,
             + the model, for what it leaves open     (spec.py)            FastAPI API, HTML form, tests, README

Editor-neutral (no pygls): `loopcoder scaffold` and the LSP command `loopcoder.scaffoldForm`
both call `build` and then write or send its files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from loopcoder.engine.api import CancelCheck, EngineAPI

from .describe import MAX_NEW_TOKENS, Described, describe
from .existing import check_app_records, existing_history
from .migrations import continue_history
from .output import ScaffoldTargetError, planned_paths, target_folder, write_files
from .render import API, FILE_NAMES, MANIFEST, RUN, render_app, run_command
from .sentence import NoFieldsError, StatedField, StatedForm, read_sentence
from .spec import FIELD_TYPES, FormField, FormSpec, LoadedSpec, SpecError, load_spec, spec_json_schema
from .summary import spec_summary

__all__ = ["API", "FIELD_TYPES", "MANIFEST", "MAX_NEW_TOKENS", "RUN", "Described", "FormField", "FormSpec", "LoadedSpec", "NoFieldsError",
           "Scaffold", "ScaffoldTargetError", "SpecError", "StatedField", "StatedForm", "build", "check_folder", "over_existing",
           "describe", "load_spec", "planned_paths", "read_sentence", "render_app", "run_command", "spec_json_schema", "spec_summary",
           "target_folder", "write_files"]


@dataclass(frozen=True)
class Scaffold:
    spec: FormSpec
    repairs: list[str]  # names the spec's author gave that were changed to safe ones
    files: dict[str, str]  # relative POSIX path -> text, the manifest included
    notes: tuple[str, ...] = ()  # what the sentence stated that the spec does not hold, and defaults taken

    @property
    def run(self) -> str:
        """The command that starts the app from its folder, on port 8000."""
        return run_command(8000)


def check_folder(folder, force: bool) -> None:
    """Refuse a folder the app's files cannot go into; every app has the same file names, so
    this is known before the model runs."""
    planned_paths(folder, dict.fromkeys(FILE_NAMES), force)


def build(description: str = "", spec: Any = None, engine: Callable[[], EngineAPI] | None = None,
          cancelled: CancelCheck | None = None, progress: Callable[[int], None] | None = None,
          max_new_tokens: int = MAX_NEW_TOKENS) -> Scaffold:
    """The app for a spec (JSON data or text; the model is not used) or else for a description.

    `engine` is called only when the sentence leaves something open, so a spec, or a sentence
    that states every field's type, never loads a model.
    """
    if spec is not None:
        loaded = load_spec(spec)
        return Scaffold(loaded.spec, loaded.repairs, render_app(loaded.spec))
    described = describe(description, engine, cancelled=cancelled, progress=progress, max_new_tokens=max_new_tokens)
    loaded = described.loaded
    return Scaffold(loaded.spec, loaded.repairs, render_app(loaded.spec), described.notes)


def over_existing(folder, app: Scaffold) -> tuple[Scaffold, bool]:
    """`app` as it goes over the app already in `folder`, if any (the caller was allowed to
    overwrite): the new spec becomes the next revision of that app's history, its table keeps
    its name, and the records are checked (InvalidRequestError when they cannot survive it;
    losses are allowed, the overwrite having been forced). Returns the app to write and whether
    an app was there."""
    history = existing_history(folder)
    if history is None:
        return app, False
    before = history[-1].spec
    spec = app.spec.model_copy(update={"entity": before.entity})
    told = check_app_records(folder, before, spec, force=True)
    return Scaffold(spec, app.repairs, render_app(spec, continue_history(history, spec, None)),
                    app.notes + tuple(told)), True
