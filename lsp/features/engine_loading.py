"""Load the engine once, in the background, and hand it to whoever needs it first.

Editor-neutral. The LSP server starts loading at `initialized`, so the model is being
read while the editor opens its first file; requests that arrive before it is ready
wait for it, and a load failure is re-raised (as the same `LoopcoderError`) to every
request, so the user sees why, on each try, instead of a silent dead server.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

from loopcoder.engine.engine import Engine
from loopcoder.engine.errors import LoopcoderError, ModelLoadError

from .settings import ServerSettings

log = logging.getLogger(__name__)


def load_engine(settings: ServerSettings) -> Engine:
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
        self._future: Future[Engine] | None = None
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

    def get(self, settings: ServerSettings) -> Engine:
        """The engine, loading it now if nobody started to (blocks: call from a worker thread)."""
        self.start(settings)
        assert self._future is not None
        return self._future.result()

    @property
    def started(self) -> bool:
        return self._future is not None

    @property
    def loaded(self) -> Engine | None:
        """The engine if it is ready, without waiting."""
        future = self._future
        return future.result() if future is not None and future.done() and future.exception() is None else None
