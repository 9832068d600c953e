"""Notification delivery latency (event committed → accepted by the channel) at a steady rate of
events, against the 5-minute SLO.

    python bench/notifications.py [--rate 1000] [--seconds 300] [--senders 2] [--quick]

Everything runs here: a fresh SQLite database in a temporary CANARYHUB_VAR_DIR (or DATABASE_URL
if set), a real SMTP server (aiosmtpd) and a local HTTP server standing in for PagerDuty and the
on-call webhook. The producer records `--rate` P1 incidents per minute through
monitoring.services.incident_raise (each: the on-call person's feed and e-mail, a PagerDuty
page, the on-call webhook — three outgoing messages); `--senders` processes run the sender's
rounds (monitoring.notifications.services.deliveries_send_due, what the Celery task loops on)
as fast as they find work. After the producer stops, the bench waits for the outbox to drain and
prints p50/p95/p99/max latency per channel, the share within 5 minutes, and a histogram.
`--quick`: 1,000 events per minute for 15 seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.receivers import HttpReceiver, SmtpReceiver  # noqa: E402

SENDER = """
import os, time, django
django.setup()
from monitoring.notifications.services import deliveries_send_due
stop = os.environ["BENCH_STOP_FILE"]
open(stop + f".ready-{os.getpid()}", "w").close()
while not os.path.exists(stop):
    if not deliveries_send_due(limit=50):
        time.sleep(0.05)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def histogram(values: list[float], *, width: int = 50) -> list[str]:
    edges = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, float("inf")]
    counts = [0] * len(edges)
    for v in values:
        counts[next(i for i, e in enumerate(edges) if v <= e)] += 1
    top = max(counts) or 1
    lines, low = [], 0.0
    for edge, n in zip(edges, counts, strict=True):
        label = f"{low:>6g}-{edge:<6g}s" if edge != float("inf") else f"{low:>6g}+      s"
        lines.append(f"  {label} {'#' * round(width * n / top):<{width}} {n}")
        low = edge
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per minute")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1,000 events/min for 15 s")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.seconds = 1000.0, 15.0

    http, smtp = HttpReceiver().start(), SmtpReceiver().start()
    var = Path(tempfile.mkdtemp(prefix="canaryhub-bench-notify-"))
    stop_file = var / "stop"
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "canaryhub.settings", "CANARYHUB_VAR_DIR": str(var),
        "CANARYHUB_SMTP_HOST": "127.0.0.1", "CANARYHUB_SMTP_PORT": str(smtp.port),
        "CANARYHUB_PAGERDUTY_URL": f"{http.url}/pagerduty", "CANARYHUB_PAGERDUTY_ROUTING_KEY": "bench",
        "CANARYHUB_ON_CALL_ADDRESS": f"{http.url}/oncall-hook", "CANARYHUB_NOTIFY_ALLOW_PRIVATE_URLS": "1",
        "CANARYHUB_NOTIFY_RETRY_BASE_S": "1", "BENCH_STOP_FILE": str(stop_file), "LOG_LEVEL": "WARNING",
    })
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from django.contrib.auth.models import Group

    from monitoring.models import NotificationDelivery
    from monitoring.services import incident_raise
    from tests.factories import UserFactory

    oncall = UserFactory(username="oncall")
    oncall.groups.add(Group.objects.get_or_create(name="on_call")[0])

    senders = [subprocess.Popen([sys.executable, "-c", SENDER], cwd=ROOT) for _ in range(args.senders)]
    while len(list(var.glob("stop.ready-*"))) < args.senders:  # each sender has loaded Django
        time.sleep(0.1)
    total = int(args.rate * args.seconds / 60)
    interval = 60.0 / args.rate
    print(f"producing {total} P1 events at {args.rate:g}/min for {args.seconds:g} s, {args.senders} sender(s)",
          flush=True)
    started = time.monotonic()
    try:
        for n in range(total):
            due = started + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            incident_raise(severity="P1", kind="monitor_silent", summary=f"bench event {n}")
            if n and n % max(1, int(args.rate / 6)) == 0:
                left = NotificationDelivery.objects.filter(status__in=["pending", "sending"]).count()
                print(f"  {n}/{total} events, {left} messages waiting", flush=True)
        behind = time.monotonic() - started - args.seconds
        print(f"producer done ({behind:+.1f} s against its schedule); draining", flush=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and NotificationDelivery.objects.filter(
                status__in=["pending", "sending"]).exists():
            time.sleep(0.5)
    finally:
        stop_file.write_text("stop")
        for s in senders:
            s.wait(timeout=30)
        http.stop()
        smtp.stop()

    rows = list(NotificationDelivery.objects.exclude(channel="feed").values_list("channel", "status", "latency_s"))
    print(f"\n{len(rows)} outgoing messages for {total} events; received: {len(smtp.messages)} e-mails, "
          f"{len(http.at('/pagerduty'))} PagerDuty events, {len(http.at('/oncall-hook'))} webhooks")
    everything = []
    print(f"{'channel':<10} {'sent':>6} {'dead':>5} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7} {'<=300 s':>8}")
    for channel in sorted({c for c, _, _ in rows}):
        lat = [x for c, st, x in rows if c == channel and st == "sent" and x is not None]
        dead = sum(1 for c, st, _ in rows if c == channel and st == "dead")
        everything += lat
        within = sum(1 for x in lat if x <= 300) / len(lat) if lat else 0
        print(f"{channel:<10} {len(lat):>6} {dead:>5} {percentile(lat, .5):>7.2f} {percentile(lat, .95):>7.2f} "
              f"{percentile(lat, .99):>7.2f} {max(lat, default=float('nan')):>7.2f} {within:>8.1%}")
    if everything:
        print(f"all        {len(everything):>6}       {statistics.median(everything):>7.2f} "
              f"{percentile(everything, .95):>7.2f} {percentile(everything, .99):>7.2f} {max(everything):>7.2f}")
        print("\nlatency histogram (all channels):")
        print("\n".join(histogram(everything)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
