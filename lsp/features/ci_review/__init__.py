"""`loopcoder review`: review a change set in CI and report it as SARIF, a GitHub review, or text.

The pieces, in the order a review runs them:

- `diff`: the change set, from `git diff BASE..HEAD`, a unified diff file, or whole
  files, parsed with `unidiff` into files and hunks of new (added or changed) lines;
- `context`: what the model sees around a hunk: the file's imports and the enclosing
  function or class (`ast` for Python), or a window of lines;
- `review.analyzers_on_changed_lines`: ruff and bandit (`lsp/features/analyzers.py`),
  when installed, run on the changed files; their findings on changed lines ground the
  review;
- `model_review`: one JSON-constrained answer per hunk, every hunk of a file in one
  engine session so the shared prefix stays warm;
- `lsp/features/findings.py`: the one finding type, merging and deduplication (the
  editor's review shares both with this one);
- `formats`: SARIF 2.1.0, the GitHub pull-request review body, and colored text;
- `review`: the whole run, its report, and the exit status `--fail-on` asks for.
"""
