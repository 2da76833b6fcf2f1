"""The engine served: the daemon that owns it (`daemon`, over `protocol`), the thin client
that reaches it (`client`), the OpenAI- and TGI-compatible HTTP API (`http`), and the
remote backends that serve the same `EngineAPI` from someone else's server (`remote`).

Everything here but the daemon imports only `engine.api`, `engine.errors`, `protocol`,
the tokenizer and the sampling data: no torch models and no kernels, so a client starts
in a fraction of a second (tests/engine/test_layout.py holds it to that).
"""
