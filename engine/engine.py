"""The engine: a model, its paged KV cache and the warm document sessions on top.

`Engine.generate_for(key, prompt_ids, params)` is the warm path: the document's session
keeps the K/V of its last prompt and generated tokens, a new prompt is cut back to the
longest common token prefix, and only the rest is prefilled, in chunks. With
`params.json_schema` every token is masked to the schema; `generate_json` returns the
parsed value.

Threads: front ends call from any thread, at once. Requests go through `scheduler`,
which batches every document's work into shared forward steps (continuous batching);
the caller's thread drives the steps until its request is done.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from .config import ModelConfig
from .api import (
    CancelCheck,
    EngineAPI,
    GenerationResult,
    Priority,
    StopPredicate,
    TokenCallback,
    Usage,
    as_id_list,
)
from .errors import InvalidRequestError, KVCacheOutOfMemoryError, TokenizerError
from .kv_cache import BlockPool, CacheConfig, KVCache
from .cuda_graphs import cuda_graphs_blocker
from .model_runner import ModelRunner, kernel_errors
from .models.llama import LlamaForCausalLM
from .quantization import weight_bytes
from .sampling import FinishReason, SamplingParams
from .sampling.grammar import GrammarConstraint, GrammarVocab
from .scheduler import Scheduler, Work
from .sessions import DocumentSession, SessionCache
from .token_healing import TokenTexts
from .tokenizer import Tokenizer


@dataclass(frozen=True)
class EngineConfig:
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    kv_budget_bytes: int = 1 << 30
    block_size: int = 16
    prefill_chunk: int = 512  # most prompt tokens of one request in one step
    step_tokens: int = 512  # most tokens of all requests in one step (decode tokens first)
    # Replay captured CUDA graphs for decode steps (engine/cuda_graphs.py), on CUDA where the
    # Triton decode kernels run; LOOPCODER_KERNELS=torch or False here keeps every step eager.
    cuda_graphs: bool = True
    precision: str = ""  # why this dtype and weight quantization were chosen (loader.resolve_precision)


def _never() -> bool:
    return False


@dataclass(frozen=True)
class CacheLayout:
    """The KV pages an engine allocates and whether its decode steps replay CUDA graphs; a
    tensor-parallel follower rank allocates the same layout for its shard (engine/parallel)."""

    cache: CacheConfig  # the pool's blocks
    graphs: bool
    max_context: int  # positions a graph covers

    @classmethod
    def plan(cls, model_config: ModelConfig, config: EngineConfig) -> "CacheLayout":
        cache = CacheConfig.from_budget(model_config, config.kv_budget_bytes, config.block_size, config.dtype)
        with kernel_errors():  # reads LOOPCODER_KERNELS
            graphs = config.cuda_graphs and cuda_graphs_blocker(model_config, config.dtype, config.device) is None
        return cls(cache, graphs, min(model_config.max_position_embeddings, cache.num_blocks * cache.block_size))

    @property
    def scratch_block(self) -> int:
        """The block a graph's padding rows write to: one past the pool's."""
        return self.cache.num_blocks

    def allocate(self, model_config: ModelConfig, device: str) -> KVCache:
        blocks = self.cache.num_blocks + (1 if self.graphs else 0)
        return KVCache(model_config, blocks, self.cache.block_size, self.cache.dtype, device)

    def runner(self, model: LlamaForCausalLM, kv: KVCache, device: str, runner_class: type = ModelRunner) -> ModelRunner:
        runner = runner_class(model, device)
        if self.graphs:
            runner.use_cuda_graphs(kv, self.scratch_block, self.max_context)
        return runner


class Engine(EngineAPI):
    def __init__(self, model: LlamaForCausalLM, tokenizer: Tokenizer | None, config: EngineConfig = EngineConfig(),
                 runner_class: type[ModelRunner] = ModelRunner):
        """`runner_class`: TensorParallelRunner for rank 0 of a sharded model (engine/parallel)."""
        self.model = model.eval()
        self.model_config: ModelConfig = model.config
        self.tokenizer = tokenizer
        self.config = config
        layout = CacheLayout.plan(self.model_config, config)
        self.cache_config = layout.cache
        self.kv = layout.allocate(self.model_config, config.device)
        self.pool = BlockPool(layout.cache.num_blocks)
        self.cache = SessionCache(self.pool, self.kv)
        self.runner = layout.runner(model, self.kv, config.device, runner_class)
        self.weight_bytes = weight_bytes(model)  # this process's (its shard's, tensor-parallel), quantized or not
        self.sessions: dict[str, DocumentSession] = {}
        self._lock = threading.RLock()
        self.scheduler = Scheduler(self)
        self.demotions = 0  # idle documents whose pages were taken for other work
        self._anonymous = 0
        self._texts: TokenTexts | None = None
        self._grammar_vocab: GrammarVocab | None = None

    # -- the stable Python hook -----------------------------------------------------

    def logits(self, token_ids: list[int]) -> torch.Tensor:
        """Full forward with no cache: float32 logits (len(token_ids), vocab) on the CPU."""
        ids = self._check_prompt(token_ids)
        with self._lock:
            return self.runner.full_logits(ids, self.config.dtype).cpu()

    def generate(self, token_ids: list[int], max_new_tokens: int = 16, temperature: float = 0.0, **params) -> list[int]:
        """Generated token ids, through the cached (paged, warm) path."""
        sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, **params)
        with self._lock:
            self._anonymous += 1
            key = f"<generate {self._anonymous}>"
        try:
            return self.generate_for(key, token_ids, sampling).token_ids
        finally:
            self.close(key)

    # -- documents --------------------------------------------------------------------

    def open(self, key: str) -> DocumentSession:
        with self._lock:
            session = self.sessions.get(key)
            if session is None:
                session = self.sessions[key] = DocumentSession(key)
            return session

    def close(self, key: str, keep_cached: bool = True) -> None:
        """Unpin a document: its blocks stay reusable by hash until evicted.

        keep_cached=False forgets the K/V nothing else shares, so the document's next prompt
        is computed from scratch (a stateless server; the benchmarks' baseline).
        """
        with self._lock:
            self.scheduler.cancel_key(key)
            session = self.sessions.pop(key, None)
            if session is not None:
                self.cache.release(session, keep_cached)

    def prefill(self, key: str, token_ids: list[int], cancelled: CancelCheck | None = None, *,
                priority: Priority = Priority.BACKGROUND, client: str = "") -> Usage:
        """Bring a document's session up to `token_ids` (pre-warming on open or save)."""
        ids = self._check_prompt(token_ids)
        work = self._run(Work(key, ids, GenerationResult([], "", FinishReason.STOP, Usage(prompt_tokens=len(ids))),
                              priority=priority, client=client, cancelled=cancelled or _never))
        return work.result.usage

    def sync(self, key: str, token_ids: list[int]) -> torch.Tensor:
        """Bring a document's session up to `token_ids`; returns the last position's logits (V,)."""
        ids = self._check_prompt(token_ids)
        work = self._run(Work(key, ids, GenerationResult([], "", FinishReason.STOP, Usage(prompt_tokens=len(ids))),
                              want_logits=True))
        return work.logits.cpu()

    def generate_for(
        self,
        key: str,
        token_ids: list[int],
        params: SamplingParams,
        on_token: TokenCallback | None = None,
        cancelled: CancelCheck | None = None,
        *,
        healed_text: str = "",
        stop_when: StopPredicate | None = None,
        priority: Priority = Priority.INTERACTIVE,
        client: str = "",
    ) -> GenerationResult:
        """Generate for document `key`, reusing its warm K/V; stops on eos, stop strings, length or cancel.

        `healed_text`: the text of a prompt token the caller dropped (token healing); the
        first generated token must start with it, and it is cut from the output.
        `stop_when(text)`: called with the text so far after each token; True stops.
        `params.json_schema`: only tokens the schema allows are sampled, and generation
        stops once the JSON value is complete.
        `priority`, `client`: the scheduler's order (see engine.scheduler).
        """
        ids = self._check_prompt(token_ids, params.max_new_tokens)
        constraint = self._json_constraint(params, healed_text)
        first_tokens = None
        if healed_text:
            first_tokens = self._token_texts().with_prefix(healed_text)
            if not first_tokens.numel():
                raise InvalidRequestError(f"healed_text {healed_text[:40]!r}: no token of the vocabulary starts with "
                                          f"it; it must be the text of the prompt token the client cut off")
        result = GenerationResult([], "", FinishReason.CANCELLED, Usage(prompt_tokens=len(ids)))
        work = Work(key, ids, result, params, priority, client, on_token, cancelled or _never, healed_text,
                    stop_when, constraint, first_tokens=first_tokens)
        return self._run(work).result

    # -- internals ----------------------------------------------------------------------

    def _run(self, work: Work) -> Work:
        self.scheduler.submit(work)
        self.scheduler.drive(work)
        return work

    def _json_constraint(self, params: SamplingParams, healed_text: str) -> GrammarConstraint | None:
        """The request's grammar matcher; raises on a bad combination before any model work."""
        if params.json_schema is None:
            return None
        if healed_text:
            raise InvalidRequestError("json_schema cannot be combined with token healing (healed_text): "
                                      "the schema already fixes how the output starts")
        if self._grammar_vocab is None:
            if self.tokenizer is None:
                raise TokenizerError("constrained decoding (json_schema) needs a tokenizer; this engine has none")
            self._grammar_vocab = GrammarVocab(self.tokenizer, self.model_config.vocab_size)
        return GrammarConstraint.for_json_schema(self._grammar_vocab, params.json_schema)

    def _token_texts(self) -> TokenTexts:
        if self._texts is None:
            if self.tokenizer is None:
                raise TokenizerError("token healing needs a tokenizer")
            self._texts = TokenTexts(self.tokenizer, self.model_config.vocab_size)
        return self._texts

    def _check_prompt(self, token_ids, max_new_tokens: int = 0) -> list[int]:
        ids = as_id_list(token_ids)
        if not ids:
            raise InvalidRequestError("empty prompt: at least one token is needed")
        vocab = self.model_config.vocab_size
        for i, t in enumerate(ids):
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < vocab:
                raise InvalidRequestError(f"token id {t!r} at index {i} is out of range [0, {vocab})")
        if len(ids) + max_new_tokens > self.model_config.max_position_embeddings:
            raise InvalidRequestError(
                f"prompt of {len(ids)} tokens plus max_new_tokens={max_new_tokens} exceeds the "
                f"model's {self.model_config.max_position_embeddings} positions"
            )
        self._check_fits_the_pool(len(ids) + max_new_tokens)
        return ids

    def _check_fits_the_pool(self, tokens: int) -> None:
        """A document the whole pool cannot hold is refused before any work: evicting every
        other document would not make room, and trying would throw their pages away."""
        block_size = self.cache_config.block_size
        needed = -(-tokens // block_size)
        if needed > self.pool.num_blocks:
            raise KVCacheOutOfMemoryError(
                f"KV cache full: {tokens} tokens need {needed} KV blocks; the whole KV cache holds {self.pool.num_blocks} "
                f"blocks ({self.pool.num_blocks * block_size} tokens): raise --kv-budget or send a shorter prompt"
            )

    # -- introspection ----------------------------------------------------------------

    def stats(self) -> dict:
        with self._lock:
            dtype_bytes = torch.tensor([], dtype=self.config.dtype).element_size()
            return {
                "sessions": len(self.sessions),
                "blocks_total": self.pool.num_blocks,
                "blocks_free": self.pool.num_available,
                "blocks_cached": self.pool.num_cached,
                "block_size": self.cache_config.block_size,
                "prefix_hits": self.pool.hits,
                "evictions": self.pool.evictions,
                "kv_bytes": self.kv.nbytes,
                "kv_bytes_per_token": self.model_config.kv_bytes_per_token(dtype_bytes),
                "demotions": self.demotions,
                "queue_depth": self.scheduler.queue_depth,
                "running": len(self.scheduler.running),
                "steps": self.scheduler.steps,
                "batched_tokens": self.scheduler.batched_tokens,
                "max_batch_seqs": self.scheduler.max_batch_seqs,
                "cuda_graphs": None if self.runner.graphs is None else list(self.runner.graphs.captured),
                "cuda_graphs_extend": None if self.runner.graphs is None else list(self.runner.graphs.captured_extend),
                "graph_replays": 0 if self.runner.graphs is None else self.runner.graphs.replays,
                "tensor_parallel": self.tensor_parallel,
                "weight_bytes": self.weight_bytes,
            }

    @property
    def tensor_parallel(self) -> int:
        """The number of ranks the model is split over (1: not split)."""
        tp = getattr(self.model, "tp", None)
        return 1 if tp is None else tp.world_size
