"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.request_seconds = Histogram(
            "twin_request_seconds", "HTTP request latency (streams: until the last byte)",
            ["endpoint", "status"], registry=self.registry, buckets=LATENCY_BUCKETS)
        self.retrieval_seconds = Histogram(
            "twin_retrieval_seconds", "Retrieval latency (self-query, hybrid search, rerank, packing)",
            registry=self.registry, buckets=LATENCY_BUCKETS)
        self.generated_tokens = Counter(
            "twin_generated_tokens", "Tokens generated", ["backend"], registry=self.registry)
        self.tokens_per_second = Histogram(
            "twin_generation_tokens_per_second", "Generation speed per request", ["backend"],
            registry=self.registry, buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
        self.answer_grounding = Histogram(
            "twin_answer_grounding", "Share of a retrieval answer's sentences supported by a cited chunk",
            registry=self.registry, buckets=(0.0, 0.25, 0.5, 0.75, 0.99, 1.0))
        self.queue_depth = Gauge(
            "twin_generation_queue_depth", "Requests running or waiting for a generation slot",
            registry=self.registry)
        self.rejected = Counter(
            "twin_rejected_requests", "Requests answered with an error status (401, 422, 429, 503, ...)",
            ["status"], registry=self.registry)
