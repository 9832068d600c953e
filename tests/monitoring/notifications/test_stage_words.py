"""Notifications count stages as the pages do, from 1 ("stage: 2 of 6"); the webhook's JSON keeps
the 0-based `stage_index` machines read."""

from __future__ import annotations

from monitoring.notifications.messages import render, stage_words


def test_a_stage_reads_from_one_with_the_count():
    assert stage_words(0, 6) == "1 of 6"
    assert stage_words(5, 6) == "6 of 6"
    assert stage_words(1) == "2"
    assert stage_words(None, 6) is None and stage_words(True, 6) is None
    assert stage_words(7, 6) == "8"  # a count that cannot hold the index is not shown


def test_a_promotion_notice_says_stage_1_of_6_not_stage_index_0():
    message = render(kind="canary.held", canary_id=3, base_url="http://h/",
                     payload={"model": "m", "version": "1.1.0", "stage_index": 0, "stage_count": 6,
                              "traffic_percent": 1})
    assert ("stage", "1 of 6") in message.lines
    assert all(name != "stage_index" for name, _ in message.lines)
    assert "stage: 1 of 6" in message.text and "stage_index" not in message.text
    assert message.payload["stage_index"] == 0  # the webhook's JSON is unchanged


def test_an_on_call_summary_row_says_the_stage_in_words():
    message = render(kind="oncall.summary", canary_id=None, base_url="http://h/",
                     payload={"canaries": [{"id": 4, "model": "m", "stage_index": 2, "stage_count": 6}]})
    text = dict(message.lines)["canaries"]
    assert "stage=3 of 6" in text and "stage_index" not in text and "stage_count" not in text
