"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from twin.lag import STAGES, TwinLag

log = logging.getLogger("twin.serving")

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


class PipelineLagCollector(Collector):
    """The feature pipeline's lag and latency (twin/lag.py), read from the database at each scrape.

    `twin_pipeline_up` is 0 when the read failed (the other series are then absent)."""

    def __init__(self, read: Callable[[], list[TwinLag]], limit_seconds: float) -> None:
        self.read, self.limit_seconds = read, limit_seconds

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: registering must not query the database

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("twin_pipeline_up", "1 when the pipeline lag could be read from the database")
        try:
            lags = self.read()
        except Exception as error:  # a scrape must answer even when the database is down
            log.warning("pipeline lag not available: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        waiting = GaugeMetricFamily("twin_pipeline_waiting_documents",
                                    "Documents waiting at a stage of the feature pipeline", labels=["twin", "stage"])
        oldest = GaugeMetricFamily("twin_pipeline_oldest_waiting_seconds",
                                   "Age of the oldest document waiting at a stage (0: none waits)",
                                   labels=["twin", "stage"])
        chunks = GaugeMetricFamily("twin_pipeline_waiting_chunks", "Chunks without a vector from the current model",
                                   labels=["twin"])
        latency = GaugeMetricFamily("twin_pipeline_source_to_vector_seconds",
                                    "Seconds from a document's arrival to its vectors, over the last week's documents",
                                    labels=["twin", "quantile"])
        measured = GaugeMetricFamily("twin_pipeline_latency_documents",
                                     "Documents the source-to-vector quantiles are computed over", labels=["twin"])
        for lag in lags:
            for stage in STAGES:
                waiting.add_metric([lag.twin, stage], lag.stages[stage].waiting)
                oldest.add_metric([lag.twin, stage], lag.stages[stage].oldest_seconds or 0.0)
            chunks.add_metric([lag.twin], lag.stages["embed"].chunks)
            measured.add_metric([lag.twin], lag.latency.documents)
            for quantile, value in (("0.5", lag.latency.p50_seconds), ("0.95", lag.latency.p95_seconds)):
                if value is not None:
                    latency.add_metric([lag.twin, quantile], value)
        limit = GaugeMetricFamily("twin_pipeline_lag_limit_seconds",
                                  "TWIN_LAG_LIMIT_SECONDS: the oldest waiting document's allowed age")
        limit.add_metric([], self.limit_seconds)
        yield from (waiting, oldest, chunks, latency, measured, limit)
