"""A stage's first evaluation records the window its numbers cover: on the push provider they
count only the stage, so the window begins where the stage began, not a window before `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring import services as monitor
from monitoring.models import CanaryWatch, Observation
from monitoring.providers import PushProvider
from monitoring.samples import Reading, Sample, Target
from monitoring.thresholds import DEFAULT_THRESHOLDS

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
STAGE_SINCE = NOW - timedelta(seconds=90)  # the stage began 90 s ago; the window is 300 s


def _subject(since: datetime) -> monitor.Subject:
    target = Target(canary_id=1, model="m", version="1.1.0", baseline="1.0.0", segments=None, stage_since=since)
    return monitor.Subject(canary_id=1, stage_index=1, thresholds=DEFAULT_THRESHOLDS, traffic_percent=5,
                           random_split=True, stage_since=since, provider="push", target=target)


def _reading(**kw) -> Reading:
    pair = {role: Sample(requests=100, errors=1, last_seen=NOW, present=True) for role in ("canary", "production")}
    return Reading(window=pair, stage={k: Sample(requests=100, errors=1, last_seen=NOW, present=True)
                                       for k in pair}, source="push", **kw)


def test_the_first_window_of_a_stage_begins_at_the_stage_when_the_provider_clips_it(settings):
    settings.EVALUATION_WINDOW_S = 300
    judged = monitor.judge(_subject(STAGE_SINCE), _reading(window_start=STAGE_SINCE), now=NOW, watch=CanaryWatch())
    assert judged.evaluation.window_start == STAGE_SINCE
    assert judged.evaluation.window_end == NOW


def test_a_later_window_and_an_unclipped_reading_span_the_whole_window(settings):
    settings.EVALUATION_WINDOW_S = 300
    old = NOW - timedelta(hours=1)
    later = monitor.judge(_subject(old), _reading(window_start=NOW - timedelta(seconds=300)), now=NOW,
                          watch=CanaryWatch())
    assert later.evaluation.window_start == NOW - timedelta(seconds=300)
    # Prometheus reads `increase(...[300s])`: the numbers cover the whole window, and so does the record.
    unclipped = monitor.judge(_subject(STAGE_SINCE), _reading(), now=NOW, watch=CanaryWatch())
    assert unclipped.evaluation.window_start == NOW - timedelta(seconds=300)


@pytest.mark.django_db
def test_the_push_provider_counts_and_dates_only_the_stage_part_of_the_window():
    for end, requests in ((STAGE_SINCE - timedelta(seconds=60), 1000), (NOW - timedelta(seconds=30), 40)):
        for version in ("1.1.0", "1.0.0"):
            Observation.objects.create(model="m", version=version, segment="", window_start=end - timedelta(seconds=60),
                                       window_end=end, requests=requests, errors=0)
    target = Target(canary_id=1, model="m", version="1.1.0", baseline="1.0.0", segments=None, stage_since=STAGE_SINCE)
    reading = PushProvider().fetch([target], now=NOW, window_s=300)[1]
    assert reading.window["canary"].requests == 40  # the previous stage's 1000 are not in it
    assert reading.window_start == STAGE_SINCE
    far = Target(canary_id=1, model="m", version="1.1.0", baseline="1.0.0", segments=None,
                 stage_since=NOW - timedelta(hours=1))
    assert PushProvider().fetch([far], now=NOW, window_s=300)[1].window_start == NOW - timedelta(seconds=300)


def test_an_evaluation_names_its_stage_from_one_as_the_pages_do():
    from monitoring.models import Evaluation

    assert str(Evaluation(canary_id=3, stage_index=0, window_end=NOW)) == "canary #3 stage 1 to 2026-05-04 10:00"
