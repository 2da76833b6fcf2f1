"""Load the engine once, in the background, and hand it to whoever needs it first.

`backend: "local"` connects to the shared engine daemon (`loopcoder engine`), starting
it detached when none answers, so every editor window shares one model and its warm
documents; `"inprocess"` loads the model into this process.

Editor-neutral. The LSP server starts loading at `initialized`, so the model is being
read while the editor opens its first file; requests that arrive before it is ready
wait for it, and a load failure is re-raised (as the same `LoopcoderError`) to every
request, so the user sees why, on each try, instead of a silent dead server.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from loopcoder.engine.api import EngineAPI
from loopcoder.engine.errors import InvalidRequestError, LoopcoderError, ModelLoadError
from loopcoder.engine.hardware import allow_mps_fallback

from .settings import ServerSettings

log = logging.getLogger(__name__)


DAEMON_IDLE_TIMEOUT_S = 600.0  # a daemon an editor started exits this long after its last client left
IDLE_TIMEOUT_ENV = "LOOPCODER_ENGINE_IDLE_TIMEOUT"  # seconds, overrides DAEMON_IDLE_TIMEOUT_S (`loopcoder demo`: 15)


def daemon_idle_timeout() -> float:
    """The idle timeout of a daemon this server starts: $LOOPCODER_ENGINE_IDLE_TIMEOUT or 600 s."""
    raw = os.environ.get(IDLE_TIMEOUT_ENV, "").strip()
    if not raw:
        return DAEMON_IDLE_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InvalidRequestError(f"{IDLE_TIMEOUT_ENV}={raw!r}: expected a number of seconds above 0")
    return value


def load_engine(settings: ServerSettings) -> EngineAPI:
    if settings.backend == "local":
        engine = connect_daemon(settings)
    elif settings.backend in ("openai", "tgi"):
        engine = connect_remote(settings)
    else:
        engine = load_inprocess(settings)
    if settings.fim_template and engine.tokenizer is not None:
        engine.tokenizer.use_fim_template(settings.fim_template)  # this side builds the prompts
    return engine


def connect_remote(settings: ServerSettings) -> EngineAPI:
    """An OpenAI-compatible or TGI server; prompts are built with a local copy of its tokenizer."""
    from loopcoder.engine.loader import load_tokenizer
    from loopcoder.engine.serving.remote import OpenAIBackend, TGIBackend

    tokenizer = load_tokenizer(settings.tokenizer)
    kind = OpenAIBackend if settings.backend == "openai" else TGIBackend
    backend = kind(settings.url, tokenizer, model=settings.model,
                   api_key=settings.api_key or os.environ.get("LOOPCODER_API_KEY") or None)
    log.info("using the %s backend at %s, model %s", settings.backend, settings.url, backend.model_name)
    return backend


def daemon_args(settings: ServerSettings) -> tuple[str, ...]:
    """`loopcoder engine` arguments for these settings."""
    args = ["--device", settings.device, "--dtype", settings.dtype, "--quant", settings.quant]
    if settings.model:
        args += ["--model", str(Path(settings.model).expanduser().resolve())]
    if settings.threads:
        args += ["--threads", str(settings.threads)]
    return tuple(args)


def connect_daemon(settings: ServerSettings, client_name: str = "loopcoder lsp") -> EngineAPI:
    from loopcoder.engine.serving.client import AutoStart, DaemonClient
    from loopcoder.engine.serving.socket_file import default_socket_path

    path = Path(settings.socket).expanduser() if settings.socket else default_socket_path()
    client = DaemonClient(path, client_name=client_name,
                          autostart=AutoStart(daemon_args(settings), idle_timeout_s=daemon_idle_timeout()))
    served = client.server_info.get("model", {})
    wanted = str(Path(settings.model).expanduser().resolve()) if settings.model else ""
    if served.get("path", "") != wanted or not serves_device(served, settings.device):
        client.close_connection()
        raise ModelLoadError(
            f"the engine on {path} serves {served.get('name') or 'another model'} on {served.get('device')}, "
            f"not {settings.model or 'the default model'} on {settings.device}: stop it with `loopcoder engine "
            f"stop`, or give this editor its own engine with the `socket` setting")
    log.info("using the engine daemon on %s (pid %s)", path, client.server_info.get("pid"))
    return client


def serves_device(served_model: dict, device: str) -> bool:
    """Whether a daemon's model (its hello's `model`) runs on `device`; "auto" takes any."""
    return device == "auto" or served_model.get("device") == device


def load_inprocess(settings: ServerSettings) -> EngineAPI:
    allow_mps_fallback(settings.device)  # in time unless this process imported torch already
    import torch

    from loopcoder.engine import load_model

    started = time.perf_counter()
    dtype = None if settings.dtype == "auto" else getattr(torch, settings.dtype)
    try:
        engine = load_model(settings.model, device=settings.device, dtype=dtype, quant=settings.quant)
    except LoopcoderError:
        raise
    except (RuntimeError, AssertionError, ValueError, OSError) as e:  # torch's "no CUDA", a bad device string
        raise ModelLoadError(f"could not load the model on device {settings.device!r}: {e}") from e
    log.info("model %s loaded in %.2f s", settings.model or "(default)", time.perf_counter() - started)
    return engine


class LazyEngine:
    def __init__(self) -> None:
        self._future: Future[EngineAPI] | None = None
        self._lock = threading.Lock()

    def start(self, settings: ServerSettings) -> None:
        """Begin loading in a daemon thread; later calls do nothing."""
        with self._lock:
            if self._future is not None:
                return
            self._future = Future()
        threading.Thread(target=self._load, args=(settings,), name="loopcoder-load", daemon=True).start()

    def _load(self, settings: ServerSettings) -> None:
        assert self._future is not None
        try:
            self._future.set_result(load_engine(settings))
        except BaseException as e:  # handed to every caller of get(), who reports it
            self._future.set_exception(e)

    def get(self, settings: ServerSettings) -> EngineAPI:
        """The engine, loading it now if nobody started to (blocks: call from a worker thread)."""
        self.start(settings)
        assert self._future is not None
        return self._future.result()

    @property
    def started(self) -> bool:
        return self._future is not None

    @property
    def loaded(self) -> EngineAPI | None:
        """The engine if it is ready, without waiting."""
        future = self._future
        return future.result() if future is not None and future.done() and future.exception() is None else None


# -- the command line's --backend (loopcoder complete, loopcoder eval) -------------------

BACKEND_CHOICES = ("local", "inprocess", "openai", "tgi")


def add_backend_arguments(p) -> None:
    p.add_argument("--backend", default="local", choices=BACKEND_CHOICES,
                   help="local: the running engine daemon if one serves this model, else the model in this process "
                        "(default); inprocess: always this process; openai / tgi: a remote server at --url")
    p.add_argument("--url", default=None, help="the remote server's base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", default=None, help="bearer token for the remote server (default: $LOOPCODER_API_KEY)")
    p.add_argument("--tokenizer", default=None,
                   help="the remote model's tokenizer: its directory or .gguf (default: the embedded default model's)")
    p.add_argument("--socket", default=None, help="the engine daemon's socket (or endpoint file) for --backend local")


def engine_for_args(args, load_inprocess_now) -> EngineAPI:
    """The engine a one-shot command uses; `load_inprocess_now()` loads the model here."""
    from loopcoder.engine.errors import EngineUnavailableError

    settings = ServerSettings(model=args.model, device=getattr(args, "device", "cpu"), backend=args.backend,
                              url=args.url, api_key=args.api_key, tokenizer=args.tokenizer,
                              socket=args.socket)
    if args.backend in ("openai", "tgi"):
        return connect_remote(settings)
    if args.backend == "local":
        from loopcoder.engine.serving.client import DaemonClient
        from loopcoder.engine.serving.socket_file import default_socket_path

        path = Path(args.socket).expanduser() if args.socket else default_socket_path()
        try:
            client = DaemonClient(path, client_name="loopcoder cli")
        except EngineUnavailableError:
            log.info("no engine daemon on %s: loading the model in this process", path)
            return load_inprocess_now()
        served = client.server_info.get("model", {})
        wanted = str(Path(args.model).expanduser().resolve()) if args.model else ""
        if served.get("path", "") == wanted and serves_device(served, settings.device):
            log.info("using the engine daemon on %s", path)
            return client
        client.close_connection()
        log.info("the engine daemon on %s serves another model: loading the model in this process", path)
    return load_inprocess_now()
