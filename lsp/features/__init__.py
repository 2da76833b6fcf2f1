"""Editor-neutral assistant features shared by the LSP server, the notebook extension and the CLI."""
