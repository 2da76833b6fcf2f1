"""The jupyter-server extension: settings (traitlets), the engine it shares, and its handlers.

Enabled by `jupyter-config/jupyter_server_config.d/loopcoder.json`, which `pip install`
puts in `etc/jupyter/jupyter_server_config.d/`. Settings are read like any Jupyter
setting, e.g. `jupyter lab --LoopcoderExtension.backend=inprocess` or
`c.LoopcoderExtension.context_budget = 2048` in jupyter_server_config.py
(docs/jupyter.md lists them).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from jupyter_server.extension.application import ExtensionApp
from loopcoder.engine.api import EngineAPI, Usage
from loopcoder.lsp.features.engine_loading import LazyEngine
from loopcoder.lsp.features.requests import RequestTracker
from loopcoder.lsp.features.settings import BACKENDS, ServerSettings
from traitlets import Bool, Enum, Int, TraitError, Unicode, validate


class LoopcoderExtension(ExtensionApp):
    name = "loopcoder"
    description = "loopcoder: notebook-aware inline completion, and explain, review and hint for a cell"
    load_other_extensions = True

    backend = Enum(list(BACKENDS), default_value="local", config=True, help=(
        "Where the model runs. local: the shared engine daemon (`loopcoder engine`, started when none runs), so "
        "JupyterLab, VS Code and Neovim share one model and its warm documents; inprocess: inside the Jupyter "
        "server; openai / tgi: a remote server at `url` (vLLM, SGLang, TGI, llama.cpp's server)."))
    model = Unicode(None, allow_none=True, config=True, help=(
        "The model: a Hugging Face directory or a .gguf file (default: the embedded SmolLM2-135M); for a remote "
        "backend, the served model's name."))
    device = Unicode("cpu", config=True, help="Where a local model runs: cpu, cuda, cuda:N, mps (Apple silicon) or auto (cuda, else mps, else cpu).")
    url = Unicode(None, allow_none=True, config=True, help=(
        "A remote backend's base URL, e.g. http://gpu-box:8000 (its bearer token comes from $LOOPCODER_API_KEY)."))
    tokenizer = Unicode(None, allow_none=True, config=True, help=(
        "A remote backend's tokenizer: its model directory or .gguf (default: the embedded default model's)."))
    socket = Unicode(None, allow_none=True, config=True, help=(
        "The engine daemon's unix socket for backend=local (default: $LOOPCODER_SOCKET, else the runtime directory's)."))
    max_tokens = Int(64, config=True, help="Most tokens an inline completion generates.")
    action_tokens = Int(512, config=True, help="Most tokens explain, review and hint generate.")
    context_budget = Int(4096, config=True, help=(
        "Most tokens of notebook text before the cursor (the cells above and the cell's prefix) in a completion "
        "prompt; older cells are cut from the front. Also bounds the code a review, explain or hint reads."))
    suffix_tokens = Int(256, config=True, help="Most tokens of the cell's text after the cursor in a completion prompt.")
    include_outputs = Bool(True, config=True, help=(
        "Put the short text outputs of the cells above (stdout, results) into completion prompts, as comments."))
    max_output_chars = Int(400, config=True, help="Outputs longer than this many characters are cut (include_outputs).")
    preload = Bool(True, config=True, help=(
        "Load the model (or connect to the daemon) when the server starts, not at the first request."))

    @validate("max_tokens", "action_tokens", "context_budget", "max_output_chars")
    def _at_least_one(self, proposal: dict) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"LoopcoderExtension.{proposal['trait'].name} must be at least 1, not {proposal['value']}")
        return proposal["value"]

    @validate("suffix_tokens")
    def _not_negative(self, proposal: dict) -> int:
        if proposal["value"] < 0:
            raise TraitError(f"LoopcoderExtension.suffix_tokens must be 0 or more, not {proposal['value']}")
        return proposal["value"]

    def initialize_settings(self) -> None:
        self.engine = LazyEngine()
        self.requests = RequestTracker()
        self.workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="loopcoder-jupyter")
        self.usage: dict[str, Usage] = {}  # per session key: what its prompts cost, summed
        self.server_settings = ServerSettings(
            model=self.model, device=self.device, backend=self.backend, url=self.url, tokenizer=self.tokenizer,
            socket=self.socket, max_tokens=self.max_tokens, suffix_tokens=self.suffix_tokens,
            context_tokens=self.context_budget, action_tokens=self.action_tokens)
        if self.preload:
            self.engine.start(self.server_settings)

    def initialize_handlers(self) -> None:
        from .handlers import HANDLERS

        self.handlers.extend((f"/{self.name}/{route}", handler) for route, handler in HANDLERS)

    def get_engine(self) -> EngineAPI:
        """The engine (blocks while it loads: call from a worker)."""
        return self.engine.get(self.server_settings)

    async def in_worker(self, work: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.workers, work)

    def record(self, key: str, usage: Usage) -> None:
        total = self.usage.setdefault(key, Usage())
        total.prompt_tokens += usage.prompt_tokens
        total.cached_tokens += usage.cached_tokens
        total.prefill_tokens += usage.prefill_tokens
        total.generated_tokens += usage.generated_tokens

    async def stop_extension(self) -> None:
        self.workers.shutdown(wait=False, cancel_futures=True)
