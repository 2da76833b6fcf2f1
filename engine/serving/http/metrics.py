"""Prometheus metrics of the HTTP API, in a registry of its own (never the process-global one).

Latencies are histograms observed per request. Engine state (queue, warm documents, KV
cache) is read from `engine.stats()` at scrape time by a custom collector, so it is
always current and covers every client of the engine, not only HTTP ones.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...api import EngineAPI, GenerationResult

log = logging.getLogger(__name__)

_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class HttpMetrics:
    def __init__(self, engine: EngineAPI) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.time_to_first_token = Histogram(
            "loopcoder_time_to_first_token_seconds", "From a request reaching the engine to its first token",
            registry=r, buckets=_TTFT_BUCKETS)
        self.inter_token_latency = Histogram(
            "loopcoder_inter_token_latency_seconds", "Between consecutive generated tokens of one request",
            registry=r, buckets=_ITL_BUCKETS)
        self.request_duration = Histogram(
            "loopcoder_request_duration_seconds", "From a request reaching the engine to its end",
            registry=r, buckets=_DURATION_BUCKETS)
        self.requests = Counter(
            "loopcoder_requests", "Generation requests by endpoint and how they ended "
            "(stop, length, cancelled, error)", ["endpoint", "outcome"], registry=r)
        self.prompt_tokens = Counter("loopcoder_prompt_tokens", "Prompt tokens of HTTP requests", registry=r)
        self.cached_prompt_tokens = Counter(
            "loopcoder_prompt_cached_tokens", "Prompt tokens of HTTP requests whose K/V were reused", registry=r)
        self.generated_tokens = Counter("loopcoder_generated_tokens", "Tokens generated for HTTP requests",
                                        registry=r)
        self._lock = threading.Lock()
        self._prompt_total = self._cached_total = 0
        r.register(_EngineCollector(engine, self))

    def observe_token_gap(self, seconds: float) -> None:
        self.inter_token_latency.observe(seconds)

    def observe_result(self, endpoint: str, result: GenerationResult) -> None:
        usage, timings = result.usage, result.timings
        if timings.first_token_s:
            self.time_to_first_token.observe(timings.first_token_s)
        self.request_duration.observe(timings.total_s)
        self.requests.labels(endpoint, str(result.finish_reason)).inc()
        self.prompt_tokens.inc(usage.prompt_tokens)
        self.cached_prompt_tokens.inc(usage.cached_tokens)
        self.generated_tokens.inc(usage.generated_tokens)
        with self._lock:
            self._prompt_total += usage.prompt_tokens
            self._cached_total += usage.cached_tokens

    def observe_error(self, endpoint: str) -> None:
        self.requests.labels(endpoint, "error").inc()

    def prefix_hit_rate(self) -> float:
        """The fraction of HTTP prompt tokens served from the prefix cache since the start."""
        with self._lock:
            return self._cached_total / self._prompt_total if self._prompt_total else 0.0

    def render(self) -> bytes:
        """The text exposition format; calls engine.stats(), so run it off the event loop."""
        return generate_latest(self.registry)


class _EngineCollector(Collector):
    def __init__(self, engine: EngineAPI, metrics: HttpMetrics) -> None:
        self.engine = engine
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # names depend on whether the engine answers; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self.engine.stats()
        except Exception as exc:  # an engine daemon that went away: report it, keep serving
            log.warning("engine stats unavailable for /metrics: %s", exc)
            yield GaugeMetricFamily("loopcoder_engine_up", "Whether the engine answered", value=0)
            return
        yield GaugeMetricFamily("loopcoder_engine_up", "Whether the engine answered", value=1)
        yield GaugeMetricFamily("loopcoder_queue_depth", "Requests waiting for the scheduler",
                                value=stats["queue_depth"])
        yield GaugeMetricFamily("loopcoder_running_requests", "Requests in the running batch", value=stats["running"])
        yield GaugeMetricFamily("loopcoder_warm_documents", "Documents whose K/V the engine keeps (sessions)",
                                value=stats["sessions"])
        total, blocks = stats["kv_bytes"], stats["blocks_total"]
        per_block = total / blocks if blocks else 0.0
        yield GaugeMetricFamily("loopcoder_kv_cache_total_bytes", "Bytes of the paged KV cache", value=total)
        yield GaugeMetricFamily("loopcoder_kv_cache_used_bytes", "KV bytes held by documents and requests",
                                value=(blocks - stats["blocks_free"]) * per_block)
        yield GaugeMetricFamily("loopcoder_kv_cache_cached_bytes",
                                "KV bytes nobody holds, kept for prefix reuse until evicted",
                                value=stats["blocks_cached"] * per_block)
        yield GaugeMetricFamily("loopcoder_kv_bytes_per_token", "KV bytes one token takes",
                                value=stats["kv_bytes_per_token"])
        yield CounterMetricFamily("loopcoder_prefix_cache_hits", "KV blocks found in the prefix cache (all clients)",
                                  value=stats["prefix_hits"])
        yield CounterMetricFamily("loopcoder_kv_cache_evictions", "Cached KV blocks overwritten",
                                  value=stats["evictions"])
        yield GaugeMetricFamily("loopcoder_prefix_cache_hit_rate",
                                "Fraction of HTTP prompt tokens whose K/V were reused, since the start",
                                value=self.metrics.prefix_hit_rate())
