"""The monitor's own gauges on /metrics: the evaluator's heartbeat, the dead-man's switch, decided
rollbacks not yet carried out, the depth of the broker's queues, and notification delivery.

Refreshed from the database on every scrape (canaryhub.metrics), so every web process reports the
same numbers and nothing is lost across restarts.
"""

from __future__ import annotations

from pathlib import Path

import redis
from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone
from prometheus_client import Gauge
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from canaryhub.metrics import REGISTRY
from monitoring.models import Heartbeat, NotificationDelivery, SloHistogram, SloMeasurement
from monitoring.services import SLO_BUCKETS_S, rollbacks_pending_summary

QUEUES = ("celery", "rollbacks", "notifications")

# The evaluator's heartbeat: the alert rule in deploy/prometheus/ fires when it stops moving.
EVALUATOR_LAST_TICK = Gauge(
    "canaryhub_evaluator_last_tick_timestamp_seconds", "Unix time of the last completed evaluation tick",
    registry=REGISTRY,
)
EVALUATOR_TICK_SECONDS = Gauge("canaryhub_evaluator_last_tick_duration_seconds", "Wall time of the last tick",
                               registry=REGISTRY)
EVALUATOR_TICK_QUERIES = Gauge("canaryhub_evaluator_last_tick_queries", "Metric queries of the last tick",
                               registry=REGISTRY)
DEADMAN_TRIPPED = Gauge("canaryhub_deadman_tripped", "1 while the dead-man's switch suspends advancement",
                        registry=REGISTRY)


def refresh() -> None:
    beat = Heartbeat.objects.filter(pk=1).first()
    EVALUATOR_LAST_TICK.set(beat.last_tick_at.timestamp() if beat and beat.last_tick_at else 0)
    EVALUATOR_TICK_SECONDS.set(beat.last_tick_ms / 1000 if beat else 0)
    EVALUATOR_TICK_QUERIES.set(beat.last_tick_queries if beat else 0)
    DEADMAN_TRIPPED.set(1 if beat and beat.tripped_at else 0)
ROLLBACKS_PENDING = Gauge("canaryhub_rollbacks_pending", "Decided rollbacks not yet carried out", registry=REGISTRY)
ROLLBACK_PENDING_OLDEST = Gauge("canaryhub_rollback_pending_oldest_seconds",
                                "Age of the oldest decided rollback not yet carried out (0 with none)",
                                registry=REGISTRY)
QUEUE_DEPTH = Gauge("canaryhub_broker_queue_depth", "Messages waiting in a broker queue (-1: broker unreachable)",
                    ["queue"], registry=REGISTRY)


def queue_depths() -> dict[str, int]:
    """Messages waiting in each of our queues: Redis list lengths, or the filesystem broker's
    message files (kombu names them `<id>.<queue>.msg`). -1 for a broker that cannot be read."""
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        names = [p.name for p in folder.glob("*.msg")] if folder.is_dir() else []
        return {q: sum(1 for n in names if n.endswith(f".{q}.msg")) for q in QUEUES}
    if url.startswith(("redis://", "rediss://")):
        try:
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            return {q: int(client.llen(q)) for q in QUEUES}
        except redis.RedisError:
            return dict.fromkeys(QUEUES, -1)
    return dict.fromkeys(QUEUES, 0)


def rollbacks_refresh() -> None:
    pending = rollbacks_pending_summary(now=timezone.now())
    ROLLBACKS_PENDING.set(pending.count)
    ROLLBACK_PENDING_OLDEST.set(pending.oldest_age_s)
    for queue, depth in queue_depths().items():
        QUEUE_DEPTH.labels(queue=queue).set(depth)


# --- notification delivery ---------------------------------------------------------------------------

LATENCY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class NotificationCollector:
    """The outbox on /metrics, read from the database at each scrape (every sender process's
    work counts): delivery latency (event committed → accepted by the channel) as a histogram per
    channel against the 5-minute SLO, the pending backlog and the dead letters."""

    def describe(self):
        return []  # no database read when the collector is registered

    def collect(self):
        sent = NotificationDelivery.objects.filter(status="sent").exclude(channel="feed")
        aggs = {f"le{i}": Count("pk", filter=Q(latency_s__lte=le)) for i, le in enumerate(LATENCY_BUCKETS)}
        hist = HistogramMetricFamily("canaryhub_notification_delivery_seconds",
                                     "Seconds from the event's commit to the channel accepting the message",
                                     labels=["channel"])
        for row in sent.values("channel").annotate(n=Count("pk"), total=Sum("latency_s"), **aggs):
            buckets = [(str(le), row[f"le{i}"]) for i, le in enumerate(LATENCY_BUCKETS)] + [("+Inf", row["n"])]
            hist.add_metric([row["channel"]], buckets, row["total"] or 0.0)
        yield hist
        by_status = GaugeMetricFamily("canaryhub_notification_deliveries", "Outbox deliveries by status",
                                      labels=["status"])
        counts = dict(NotificationDelivery.objects.exclude(channel="feed").values_list("status")
                      .annotate(n=Count("pk")).values_list("status", "n"))
        for status in ("pending", "sending", "sent", "dead"):
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        yield GaugeMetricFamily("canaryhub_notification_dead_letters",
                                "Deliveries given up after their deadline or refused for good (see Notifications)",
                                value=counts.get("dead", 0))


REGISTRY.register(NotificationCollector())


# --- SLOs measured ------------------------------------------------------------------------------------


class SloCollector:
    """The measured SLOs on /metrics, read from the database at each scrape: rollback (breach →
    router at 0 %) and promotion (last signature → router at the new percent) per event, metric
    staleness at every evaluation; and the breaches of each."""

    def describe(self):
        return []  # no database read when the collector is registered

    def collect(self):
        hist = HistogramMetricFamily("canaryhub_slo_seconds",
                                     "Measured SLO durations: rollback, promotion and metric staleness",
                                     labels=["slo"])
        breaches = GaugeMetricFamily("canaryhub_slo_breaches", "Measured events past their SLO target",
                                     labels=["slo"])
        aggs = {f"le{i}": Count("pk", filter=Q(seconds__lte=le)) for i, le in enumerate(SLO_BUCKETS_S)}
        for row in SloMeasurement.objects.values("slo").annotate(
                n=Count("pk"), total=Sum("seconds"), over=Count("pk", filter=Q(breached=True)), **aggs):
            buckets = [(str(le), row[f"le{i}"]) for i, le in enumerate(SLO_BUCKETS_S)] + [("+Inf", row["n"])]
            hist.add_metric([row["slo"]], buckets, row["total"] or 0.0)
            breaches.add_metric([row["slo"]], row["over"])
        for h in SloHistogram.objects.all():
            buckets = [(str(le), h.buckets.get(str(le), 0)) for le in SLO_BUCKETS_S] + [("+Inf", h.count)]
            hist.add_metric([h.slo], buckets, h.total)
            breaches.add_metric([h.slo], h.over_target)
        yield hist
        yield breaches


REGISTRY.register(SloCollector())
