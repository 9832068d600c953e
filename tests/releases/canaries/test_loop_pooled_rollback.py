"""The error-rate rollback trigger pools the last two windows through the tick: the earlier
window's numbers come from its own stored Evaluation, and only a window that does not overlap
the current one is pooled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.access.permissions import Role
from monitoring.history import earlier_windows
from monitoring.models import Evaluation, Observation
from monitoring.providers import PushProvider
from monitoring.samples import Reading
from releases.canaries import loop as services
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services as register

T0 = timezone.now().replace(microsecond=0) - timedelta(minutes=20)


@pytest.fixture
def canary(role_user, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.PROMETHEUS_URL = ""
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    settings.STALENESS_LIMIT_S = 10**6  # the windows here are pushed for moments in the past
    platform = role_user(Role.PLATFORM, username="platform")
    owner = role_user(Role.MODEL_OWNER, username="owner")
    register.model_register(actor=platform, name="ranker", display_name="r", risk_tier="medium", owner="owner",
                            on_call="x")
    register.version_register(actor=platform, model_name="ranker", version="1.0.0", artifact_uri="s3://1",
                              status="production")
    register.version_register(actor=platform, model_name="ranker", version="1.1.0", artifact_uri="s3://2")
    with django_capture_on_commit_callbacks(execute=True):
        return lifecycle.canary_initiate(actor=owner, model_name="ranker", version="1.1.0",
                                         now=T0 - timedelta(minutes=30))


def window(end, *, canary_errors):
    """One 5-minute window at 1 %: ~3,000 canary requests against 297,000 in production at 1 %."""
    for version, requests_, errors in (("1.0.0", 297_000, 2970), ("1.1.0", 3000, canary_errors)):
        Observation.objects.create(model="ranker", version=version, window_start=end - timedelta(minutes=5),
                                   window_end=end, requests=requests_, errors=errors, latency_p99_ms=200.0,
                                   quality_sum=0.8 * requests_, quality_count=requests_)


def tick(canary, now, capture):
    with capture(execute=True):
        return services.evaluate_tick(now=now, canary_ids=[canary.pk]).outcomes[0]


def test_a_rise_too_weak_for_one_window_rolls_back_when_the_window_before_shows_it_too(
        canary, django_capture_on_commit_callbacks):
    # 1.83 % against 1.00 %: past the 0.5 pp threshold, but p ≈ 3e-5 on one window's 3,000 requests.
    window(T0, canary_errors=55)
    first = tick(canary, T0, django_capture_on_commit_callbacks)
    assert not first.rollback
    window(T0 + timedelta(minutes=5), canary_errors=55)
    second = tick(canary, T0 + timedelta(minutes=5), django_capture_on_commit_callbacks)
    assert "over the last two windows" in second.rollback and "110 errors in 6000 requests" in second.rollback
    canary.refresh_from_db()
    assert canary.state == Canary.State.ROLLED_BACK
    inputs = Evaluation.objects.get(pk=second.evaluation_id).inputs
    assert inputs["pooled_with"]["evaluation_id"] == first.evaluation_id
    assert inputs["rollback_window"]["error_rate_two_windows"]["canary"] == [110, 6000]


def test_after_a_healthy_window_the_same_rise_holds_on(canary, django_capture_on_commit_callbacks):
    window(T0, canary_errors=30)
    tick(canary, T0, django_capture_on_commit_callbacks)
    window(T0 + timedelta(minutes=5), canary_errors=55)
    outcome = tick(canary, T0 + timedelta(minutes=5), django_capture_on_commit_callbacks)
    assert not outcome.rollback
    canary.refresh_from_db()
    assert canary.state != Canary.State.ROLLED_BACK


def test_only_a_window_ending_where_this_one_starts_is_pooled(canary, django_capture_on_commit_callbacks):
    window(T0, canary_errors=55)
    first = tick(canary, T0, django_capture_on_commit_callbacks)
    now = T0 + timedelta(minutes=5)
    assert earlier_windows([canary.pk], now=now, window_s=300, cadence_s=60)[canary.pk].evaluation_id == \
        first.evaluation_id
    # One second less and the windows would share a second of traffic; a cadence and more later, the
    # window before is too far back to be "the last two windows".
    assert earlier_windows([canary.pk], now=now - timedelta(seconds=1), window_s=300, cadence_s=60) == {}
    assert earlier_windows([canary.pk], now=now + timedelta(seconds=60), window_s=300, cadence_s=60) == {}
    # An evaluation of a failing source has no window numbers to pool.
    class Broken(PushProvider):
        def fetch(self, targets, *, now, window_s):
            return {t.canary_id: Reading(error="database unavailable") for t in targets}

    with django_capture_on_commit_callbacks(execute=True):
        failed = services.evaluate_tick(now=T0 + timedelta(minutes=1), canary_ids=[canary.pk],
                                        providers={"push": Broken()}).outcomes[0]
    assert Evaluation.objects.get(pk=failed.evaluation_id).verdict == "stale"
    assert earlier_windows([canary.pk], now=now + timedelta(minutes=1), window_s=300, cadence_s=60) == {}
