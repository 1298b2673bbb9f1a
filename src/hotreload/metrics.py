"""Prometheus metrics of one service instance (its own registry, so several
instances, e.g. in tests, never collide)."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator

import dulwich
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hotreload import __version__

# ``*_created`` series are a second gauge per counter that no dashboard of ours
# reads; Prometheus shows them as separate metrics, which confused operators
disable_created_metrics()  # type: ignore[no-untyped-call]

LOCK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RELOAD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


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
        self.reloads = Counter("hotreload_reloads", "Reloads by outcome and by what asked for them "
                               "(webhook, peer, poll, push-rejected, min-commit, startup)",
                               ["outcome", "trigger"], registry=r)
        self.polls = Counter("hotreload_polls", "Polls of the remote's branch tip, by result "
                             "(unchanged, moved, error)", ["result"], registry=r)
        self.peer_forwards = Counter("hotreload_peer_forwards", "Webhooks forwarded to peers, by result "
                                     "(ok, error, unresolved)", ["result"], registry=r)
        self.min_commit_waits = Counter(
            "hotreload_min_commit_waits", "Reads with X-Data-Min-Commit this replica did not serve yet, "
            "by result (served after a reload, or 503)", ["result"], registry=r)
        self.webhook_rejected = Counter(
            "hotreload_webhook_rejected", "Webhook calls rejected before any reload, by HTTP status",
            ["status"], registry=r)
        self.lock_hold = Histogram(
            "hotreload_lock_hold_seconds", "Time the data lock was held, by holder",
            ["reason"], buckets=LOCK_BUCKETS, registry=r)
        self.reload_duration = Histogram(
            "hotreload_reload_duration_seconds", "End-to-end duration of reloads that ran",
            buckets=RELOAD_BUCKETS, registry=r)
        self.writes_diverted = Counter(
            "hotreload_writes_diverted", "API writes answered 2xx and later diverted to a conflicts branch "
            "(CFP_WRITE_ACK=local; health names the branch)", registry=r)
        self.pushes = Counter("hotreload_pushes", "Pushes by the push daemon, by result",
                              ["result"], registry=r)
        self.http_requests = Counter(
            "hotreload_http_requests", "HTTP requests by route (the URL template), method and status",
            ["route", "method", "status"], registry=r)
        self.http_duration = Histogram(
            "hotreload_http_request_duration_seconds", "HTTP request latency by route, as the app saw it",
            ["route"], buckets=HTTP_BUCKETS, registry=r)
        self.build_info = Gauge(
            "hotreload_build_info", "Versions this process runs (always 1)",
            ["version", "python", "dulwich"], registry=r)
        self.build_info.labels(__version__, platform.python_version(),
                               ".".join(map(str, dulwich.__version__))).set(1)
        self.last_successful_reload = Gauge(
            "hotreload_last_successful_reload_timestamp_seconds",
            "Unix time of the last reload that ended without an error (0: none yet)", registry=r)
        self.stream_dropped = Counter(
            "hotreload_stream_dropped", "Event streams dropped for not reading fast enough", registry=r)
        self.notifications = Counter(
            "hotreload_notifications", "Signed notifications (CFP_NOTIFY_URLS) by result: delivered, failed "
            "(an attempt; it is retried), dropped (the queue was full)", ["result"], registry=r)
        self.auth_rate_limited = Counter(
            "hotreload_auth_rate_limited", "Calls refused with 429 after too many failed authentications "
            "from their address", registry=r)

    def watch(self, name: str, documentation: str, value: Callable[[], float]) -> None:
        """A gauge whose value is read from ``value`` at each scrape."""
        Gauge(name, documentation, registry=self.registry).set_function(value)

    def watch_records(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_RecordsCollector(counts))

