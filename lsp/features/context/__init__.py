"""Repository context for completions: the workspace index (`workspace.py`), which walks the
editor's workspace folders once (then follows saves and watched-file events), honours
`.gitignore` at every level, `.git/info/exclude` and `.loopcoderignore`, never reads secrets,
binaries, oversized files or anything outside the folders, and keeps a bounded cache of
the files' text; the symbol extraction and the prompt assembly built on it read the
workspace only through it. Editor-neutral: the LSP server runs the build on a worker
thread and forwards file events.
"""
