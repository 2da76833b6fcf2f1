"""Continuous batching: every step runs one forward over all documents that have work.

Each request is a `Work`: a document key, a prompt, and either sampling parameters (a
generation) or none (a prefill, such as pre-warming). A step takes every decoding
request's next token, then chunks of prompts still to prefill, in priority order, until
the step's token budget is spent, and runs them as one batch on the paged cache. Then
each request looks at its row of logits: a finished prompt samples its first token, a
decoding request its next one.

Nobody owns a scheduling thread. A caller submits its work and then drives steps, under
the engine's lock, until its own work is finished; while it waits for the lock another
caller's step runs, which advances every request, its own included. So N editors asking
at once share each forward pass, and a process with one user pays no thread hand-off.

Rules:
- priority: INTERACTIVE (completions) before ACTION (reviews, edits, scaffolding)
  before BACKGROUND (pre-warming); within a priority, the client that was served the
  fewest tokens lately goes first, then the oldest request;
- one running request per document key: a newer one waits until the older finishes
  (the editor cancels the older one when the user types on);
- a cancelled request leaves the batch at the next step; the K/V it computed stays with
  its document, so nothing is recomputed if the user comes back;
- when the KV pool is short, documents with no running request give up their pages,
  least recently used first (their hashed blocks stay findable until overwritten); a
  request that still does not fit fails with KVCacheOutOfMemoryError, alone.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

import torch

from .api import CancelCheck, Priority, StopPredicate, TokenCallback
from .errors import InternalError, KVCacheOutOfMemoryError
from .model_runner import StepInput
from .sampling import FinishReason, SamplingParams, StopChecker, watch_stop
from .sampling.sampler import Sampler
from .sampling.grammar import GrammarConstraint
from .sessions import DocumentSession
from .token_healing import restrict_to

if TYPE_CHECKING:
    from .api import GenerationResult
    from .engine import Engine

log = logging.getLogger(__name__)

FAIRNESS_DECAY_STEPS = 64  # every this many steps, each client's served-token count halves


class _State(IntEnum):
    WAITING = 0  # queued; its document has another running request, or it was not admitted yet
    PREFILL = 1
    DECODE = 2
    DONE = 3


_ids = itertools.count(1)


@dataclass(eq=False)
class Work:
    """One request, from submission until it is finished."""

    key: str
    prompt_ids: list[int]
    result: "GenerationResult"
    params: SamplingParams | None = None  # None: prefill only
    priority: Priority = Priority.INTERACTIVE
    client: str = ""
    on_token: TokenCallback | None = None
    cancelled: CancelCheck = lambda: False
    healed_text: str = ""
    stop_when: StopPredicate | None = None
    constraint: GrammarConstraint | None = None
    want_logits: bool = False  # a prefill that hands back the last position's logits
    first_tokens: torch.Tensor | None = None  # token healing: the ids the first token may be
    id: int = field(default_factory=lambda: next(_ids))
    submitted: float = field(default_factory=time.perf_counter)
    # -- progress, written by the scheduler under the engine lock --
    state: _State = _State.WAITING
    session: DocumentSession | None = None
    pending: list[int] = field(default_factory=list)  # tokens to feed in the next steps
    logits: torch.Tensor | None = None  # the last position's, for want_logits
    error: BaseException | None = None
    # decoding
    sampler: Sampler | None = None
    stopper: StopChecker | None = None
    stop_watch: object | None = None  # watch_stop(stop_when): reads each shown delta once
    decoder: object | None = None
    to_cut: int = 0
    tokens: list[int] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state is _State.DONE


class Scheduler:
    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.waiting: list[Work] = []
        self.running: list[Work] = []
        # Submissions land here under a lock of their own, so a request never waits for
        # the engine lock (held through each forward step) just to be queued: the next
        # step takes it in. With one lock for both, the driving thread re-took the lock
        # step after step and new requests joined batches late (3.5 tokens a step at 32
        # clients instead of ~32).
        self._incoming: list[Work] = []
        self._incoming_lock = threading.Lock()
        self._served: dict[str, float] = defaultdict(float)
        self.steps = 0
        self.batched_tokens = 0  # tokens run, over all steps (stats)
        self.max_batch_seqs = 0

    # -- the caller's side -----------------------------------------------------------

    def submit(self, work: Work) -> Work:
        """Queue `work`; any thread, no engine lock needed."""
        with self._incoming_lock:
            self._incoming.append(work)
        return work

    def _take_incoming(self) -> None:
        with self._incoming_lock:
            self.waiting.extend(self._incoming)
            self._incoming.clear()

    def drive(self, work: Work) -> None:
        """Step until `work` is finished; the engine lock is taken per step so others interleave."""
        lock = self.engine._lock
        while not work.finished:
            with lock:
                if work.finished:
                    break
                if not self.step():
                    self._fail(work, InternalError(f"scheduler stalled with request {work.id} unfinished"))
        if work.error is not None:
            raise work.error

    def cancel_key(self, key: str) -> None:
        """Finish every request of document `key` as cancelled (the document is closing; engine lock held)."""
        self._take_incoming()
        for work in [w for w in self.waiting + self.running if w.key == key]:
            self._finish(work, FinishReason.CANCELLED)

    @property
    def queue_depth(self) -> int:
        return len(self.waiting) + len(self._incoming)

    # -- one step ---------------------------------------------------------------------

    def step(self) -> bool:
        """Run one batch (caller holds the engine lock); False when there was nothing to do."""
        self._take_incoming()
        self._reap_cancelled()
        self._admit()
        batch = self._pick()
        if not batch:
            # Nothing runnable: every running request was refused pages and failed. Waiting
            # ones are admitted on the next step.
            return bool(self.waiting)
        inputs = []
        for work, tokens in batch:
            inputs.append(StepInput(work.session.block_table, work.session.num_tokens, tokens))
        try:
            logits = self.engine.runner.step(inputs, self.engine.kv)
        except Exception as exc:  # a device error: every request of the batch fails, the engine lives on
            log.exception("forward step failed")
            for work, _ in batch:
                self._fail(work, exc)
            return True
        self.steps += 1
        self.batched_tokens += sum(len(t) for _, t in batch)
        self.max_batch_seqs = max(self.max_batch_seqs, len(batch))
        if self.steps % FAIRNESS_DECAY_STEPS == 0:
            for client in list(self._served):
                self._served[client] /= 2
        for (work, tokens), row in zip(batch, logits):
            self.engine.cache.commit(work.session, tokens)
            self._served[work.client] += len(tokens)
            if work.state is _State.PREFILL:
                work.result.usage.prefill_tokens += len(tokens)
            del work.pending[: len(tokens)]
            if work.finished:  # cancelled from a callback of another request
                continue
            try:
                self._advance(work, row)
            except Exception as exc:  # a caller's callback raised: that request fails alone
                self._fail(work, exc)
        return True

    def _reap_cancelled(self) -> None:
        for work in self.waiting + self.running:
            try:
                cancelled = work.cancelled()
            except Exception as exc:
                self._fail(work, exc)
                continue
            if cancelled:
                self._finish(work, FinishReason.CANCELLED)

    def _admit(self) -> None:
        busy = {w.key for w in self.running}
        for work in sorted(self.waiting, key=self._order):
            if work.key in busy:
                continue
            self.waiting.remove(work)
            try:
                work.session = self.engine.open(work.key)
                kept = self.engine.cache.plan(work.session, work.prompt_ids)
            except Exception as exc:  # copy-on-write with a full pool
                self._fail(work, exc)
                continue
            work.result.usage.cached_tokens = kept
            work.pending = work.prompt_ids[kept:]
            work.state = _State.PREFILL
            self.running.append(work)
            busy.add(work.key)

    def _order(self, work: Work) -> tuple:
        return (work.priority, self._served[work.client], work.id)

    def _pick(self) -> list[tuple[Work, list[int]]]:
        """This step's (request, tokens): every decode first, then prompt chunks, by priority."""
        budget = self.engine.config.step_tokens
        ordered = sorted(self.running, key=self._order)
        picked: list[tuple[Work, list[int]]] = []
        for work in [w for w in ordered if w.state is _State.DECODE] + [w for w in ordered if w.state is _State.PREFILL]:
            if budget <= 0:
                break
            tokens = work.pending[: min(budget, self.engine.config.prefill_chunk)]
            if not tokens or not self._reserve(work, len(tokens)):
                continue
            picked.append((work, tokens))
            budget -= len(tokens)
        return picked

    def _reserve(self, work: Work, count: int) -> bool:
        """Blocks for `count` more tokens of `work`, taking pages from idle documents if needed."""
        cache, pool = self.engine.cache, self.engine.pool
        session = work.session
        needed = -(-(session.num_tokens + count) // cache.block_size) - len(session.block_table)
        if needed > pool.num_available:
            # Make room for the whole rest of the prompt at once, or for nothing: a prompt
            # that cannot fit must not push other documents out chunk by chunk first.
            whole = -(-(session.num_tokens + len(work.pending)) // cache.block_size) - len(session.block_table)
            self._make_room(max(needed, whole))
        try:
            cache.reserve(session, session.num_tokens + count)
        except KVCacheOutOfMemoryError as exc:
            self._fail(work, exc)
            return False
        return True

    def _make_room(self, needed: int) -> None:
        """Release idle documents' pages, least recently used first, until `needed` blocks are available."""
        busy = {w.key for w in self.running}
        pool = self.engine.pool
        idle = sorted((s for k, s in self.engine.sessions.items() if k not in busy and s.block_table),
                      key=lambda s: s.last_used)
        freeable = len({b for s in idle for b in s.block_table if pool.ref_counts[b] == 1})
        if pool.num_available + freeable < needed:
            return  # it cannot fit anyway: keep everyone's pages, and the request fails alone
        for session in idle:
            if pool.num_available >= needed:
                return
            log.info("KV pool short: releasing the pages of idle document %r", session.key)
            self.engine.cache.release(session, keep_cached=True)
            self.engine.demotions += 1

    # -- a request sees its logits ----------------------------------------------------

    def _advance(self, work: Work, logits: torch.Tensor) -> None:
        if work.state is _State.PREFILL:
            if work.pending:
                return
            work.result.timings.prefill_s = time.perf_counter() - work.submitted
            if work.params is None:
                if work.want_logits:
                    work.logits = logits
                self._finish(work, FinishReason.STOP)
                return
            self._start_decoding(work)
            if work.first_tokens is not None:
                logits = restrict_to(logits, work.first_tokens)
        self._sample(work, logits)

    def _start_decoding(self, work: Work) -> None:
        engine = self.engine
        work.state = _State.DECODE
        work.sampler = Sampler(work.params)
        eos = engine.tokenizer.eos_ids if engine.tokenizer is not None else engine.model_config.eos_token_ids
        work.stopper = StopChecker(work.params, eos)
        work.stop_watch = watch_stop(work.stop_when) if work.stop_when is not None else None
        work.decoder = engine.tokenizer.stream_decoder(work.prompt_ids) if engine.tokenizer is not None else None
        work.to_cut = len(work.healed_text)

    def _sample(self, work: Work, logits: torch.Tensor) -> None:
        params, constraint, stopper = work.params, work.constraint, work.stopper
        if work.cancelled():
            self._finish(work, FinishReason.CANCELLED)
            return
        token = work.sampler.sample(logits if constraint is None else constraint.mask(logits))
        timings = work.result.timings
        if not timings.first_token_s:
            timings.first_token_s = time.perf_counter() - work.submitted
        # A schema decides the end itself: its end-of-sequence stops even with ignore_eos.
        if stopper.check_token(token) or (constraint is not None and constraint.is_end(token)):
            self._finish(work, FinishReason.STOP)
            return
        if constraint is not None:
            constraint.consume(token)
        work.tokens.append(token)
        delta = work.decoder.push(token) if work.decoder is not None else ""
        if work.to_cut:
            cut = min(work.to_cut, len(delta))
            delta, work.to_cut = delta[cut:], work.to_cut - cut
        shown, stop_string_hit = stopper.feed(delta)
        self._emit(work, token, shown)
        complete = constraint is not None and constraint.done  # the JSON value is complete
        if (stop_string_hit or complete
                or (work.stop_watch is not None and shown and work.stop_watch.feed(shown))):
            self._finish(work, FinishReason.STOP)
        elif len(work.tokens) == params.max_new_tokens:
            self._finish(work, FinishReason.LENGTH)
        else:
            work.pending = [token]

    @staticmethod
    def _emit(work: Work, token: int | None, text: str) -> None:
        if text:
            work.parts.append(text)
        if work.on_token is not None and (text or token is not None):
            work.on_token(-1 if token is None else token, text)

    # -- the end of a request -----------------------------------------------------------

    def _finish(self, work: Work, reason: FinishReason) -> None:
        if work.finished:
            return
        if work.state is _State.DECODE and not work.stopper.stopped:
            # No stop string cut the text: emit what was held back.
            tail = work.decoder.flush() if work.decoder is not None else ""
            shown, _ = work.stopper.feed(tail[work.to_cut:])
            if not work.stopper.stopped:
                shown += work.stopper.flush()
            try:
                self._emit(work, None, shown)
            except Exception as exc:
                work.error = exc
        result = work.result
        result.token_ids, result.text, result.finish_reason = work.tokens, "".join(work.parts), reason
        result.usage.generated_tokens = len(work.tokens)
        result.timings.total_s = time.perf_counter() - work.submitted
        self._remove(work)

    def _fail(self, work: Work, exc: BaseException) -> None:
        if work.finished:
            return
        work.error = exc
        self._remove(work)

    def _remove(self, work: Work) -> None:
        if work in self.waiting:
            self.waiting.remove(work)
        if work in self.running:
            self.running.remove(work)
        work.state = _State.DONE
