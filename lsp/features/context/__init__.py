"""Cross-file context for completions (issue 24): what the workspace defines and the current file uses.

Editor-neutral (no pygls). `symbols` reads definitions, imports and the names near the cursor
from a file's text with tree-sitter.
"""
