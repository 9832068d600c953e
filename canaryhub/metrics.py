"""CanaryHub's own Prometheus metrics registry, exported on /metrics (monitoring.views.metrics).

Each layer defines its gauges and counters where its data lives, in this registry; gauges
that describe the database register a refresher that runs on every scrape (cheap aggregate
queries), so every web process reports the same numbers and nothing is lost across restarts.
The kernel holds only the registry: it imports no app.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

_refreshers: list[Callable[[], None]] = []


def on_scrape(refresh: Callable[[], None]) -> Callable[[], None]:
    """Register `refresh` to run before each scrape (apps register theirs in AppConfig.ready)."""
    if refresh not in _refreshers:
        _refreshers.append(refresh)
    return refresh


def scrape() -> bytes:
    for refresh in _refreshers:
        refresh()
    return generate_latest(REGISTRY)
