"""Prometheus metrics of one service instance (its own registry, so several
instances, e.g. in tests, never collide)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LOCK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RELOAD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _RecordsCollector(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("hotreload_records", "Records in the served snapshot, per sheet",
                                   labels=["sheet"])
        for sheet, n in self._counts().items():
            family.add_metric([sheet], n)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reloads = Counter("hotreload_reloads", "Reloads by outcome", ["outcome"], registry=r)
        self.webhook_rejected = Counter(
            "hotreload_webhook_rejected", "Webhook calls rejected before any reload, by HTTP status",
            ["status"], registry=r)
        self.lock_hold = Histogram(
            "hotreload_lock_hold_seconds", "Time the data lock was held, by holder",
            ["reason"], buckets=LOCK_BUCKETS, registry=r)
        self.reload_duration = Histogram(
            "hotreload_reload_duration_seconds", "End-to-end duration of reloads that ran",
            buckets=RELOAD_BUCKETS, registry=r)
        self.pushes = Counter("hotreload_pushes", "Pushes by the push daemon, by result",
                              ["result"], registry=r)
        self.auth_rate_limited = Counter(
            "hotreload_auth_rate_limited", "Calls refused with 429 after too many failed authentications "
            "from their address", registry=r)

    def watch_records(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_RecordsCollector(counts))
