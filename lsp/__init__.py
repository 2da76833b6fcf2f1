"""Front ends that speak to editors: the LSP server and the command line."""
