"""The shipped Alertmanager configuration with the real Debian `prometheus-alertmanager`: the
shipped dead-man rule fires in a real Prometheus scraping a silent CanaryHub, and Alertmanager
delivers it to PagerDuty (Events API v2) and to CanaryHub's receiver — here local receivers at
the addresses the configuration names; what reached the stand-in is then given to CanaryHub's
real receiver endpoint. Timings are shortened (`for`, group waits); routes,
receivers and the rule's expression are the shipped ones."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from governance.access.permissions import Role
from monitoring.models import NotificationDelivery
from tests.harness.alertmanager import AlertmanagerServer
from tests.harness.prometheus import PrometheusServer
from tests.harness.receivers import HttpReceiver

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
pytestmark = pytest.mark.postgres  # one pass of `make test` is enough for a slow real-server test


def test_the_dead_man_alert_reaches_pagerduty_and_canaryhub(role_user):
    receiver = HttpReceiver().start()
    now = time.time()
    # CanaryHub's /metrics as a silent evaluator leaves it: last tick 20 minutes ago, a canary active.
    receiver.pages["/metrics"] = (
        f"canaryhub_evaluator_last_tick_timestamp_seconds {now - 1200}\n"
        "canaryhub_active_canaries 1\ncanaryhub_deadman_tripped 1\n").encode()
    config = (DEPLOY / "alertmanager" / "alertmanager.yml").read_text()
    for production, local in (("https://events.pagerduty.com/v2/enqueue", f"{receiver.url}/pagerduty"),
                              ("http://web:8000/api/v1/alerts/alertmanager/", f"{receiver.url}/alertmanager"),
                              ("/etc/prometheus/alertmanager-canaryhub-token", "{dir}/canaryhub-token"),
                              ("/etc/prometheus/alertmanager-pagerduty-routing-key", "{dir}/routing-key"),
                              ("group_wait: 30s", "group_wait: 1s"), ("group_wait: 10s", "group_wait: 1s")):
        assert production in config, f"the shipped configuration no longer has {production}"
        config = config.replace(production, local)
    alertmanager = AlertmanagerServer(config, files={"routing-key": "rk-test\n", "canaryhub-token": "chub-token\n"}).start()
    rules = (DEPLOY / "prometheus" / "canaryhub-alerts.yml").read_text().replace("for: 1m", "for: 0s")
    prometheus = PrometheusServer(
        [urlsplit(receiver.url).netloc], scrape_interval="1s", files={"canaryhub-alerts.yml": rules},
        extra_config=("rule_files: [canaryhub-alerts.yml]\n"
                      f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{alertmanager.port}']\n"),
    ).start()
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not (receiver.at("/pagerduty") and receiver.at("/alertmanager")):
            time.sleep(0.5)
        pages = [r.json() for r in receiver.at("/pagerduty")]
        hook_requests = receiver.at("/alertmanager")
        hooks = [r.json() for r in hook_requests]
    finally:
        prometheus.stop()
        alertmanager.stop()
        receiver.stop()
    assert pages, "PagerDuty received nothing"
    assert {p["routing_key"] for p in pages} == {"rk-test"} and pages[0]["event_action"] == "trigger"
    assert pages[0]["payload"]["severity"] == "critical" and pages[0]["dedup_key"]
    assert hooks, "the webhook received nothing"
    names = {a["labels"]["alertname"] for h in hooks for a in h["alerts"]}
    assert "CanaryHubEvaluatorSilent" in names
    assert all(h["status"] == "firing" for h in hooks)
    assert hook_requests[0].headers["authorization"] == "Bearer chub-token"
    # What Alertmanager posted, given to CanaryHub's receiver: on-call and platform are told, once.
    platform = role_user(Role.PLATFORM, username="platform")
    oncall = role_user(Role.ON_CALL, username="oncall")
    api = APIClient()
    api.force_authenticate(platform)
    first = api.post("/api/v1/alerts/alertmanager/", hooks[0], format="json")
    assert first.status_code == 202 and first.json()["recorded"] >= 1
    assert api.post("/api/v1/alerts/alertmanager/", hooks[0], format="json").json()["recorded"] == 0
    told = NotificationDelivery.objects.filter(event__kind="alert.firing", channel="feed")
    assert {oncall.pk, platform.pk} <= set(told.values_list("user_id", flat=True))
    assert "CanaryHubEvaluatorSilent" in {d.event.payload["alertname"] for d in told}
