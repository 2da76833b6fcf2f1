"""Repository context for completions (issue 24; docs/context.md), editor-neutral (no pygls).

- `workspace.py`: the workspace index. It walks the editor's workspace folders once (then
  follows saves and watched-file events), honours `.gitignore` at every level,
  `.git/info/exclude` and `.loopcoderignore`, never reads secrets, binaries, oversized files
  or anything outside the folders, and keeps a bounded cache of the files' text.
- `symbols.py`: definitions, imports and the names near the cursor, read with tree-sitter.
- `gather.py`: the candidates from each source, their ranking, the budget, and the choice
  kept between keystrokes; `repo_prompt.py`: the prompt formats.
- `provider.py`: one workspace's context behind the calls the CLI and the LSP server make.
"""
