"""Threshold changes in words: every threshold a label, stages from 1."""

from __future__ import annotations

from governance.thresholds.presenters import stage_of, threshold_label
from monitoring.thresholds import DEFAULT_THRESHOLDS


def test_every_default_threshold_has_a_label_in_words():
    for section, keys in DEFAULT_THRESHOLDS.items():
        for key in keys:
            label = threshold_label(f"{section}.{key}")
            assert key not in label and label.startswith(("Promote: ", "Roll back: "))


def test_stages_are_numbered_from_one_of_the_total():
    assert stage_of(0, [{}] * 6) == "stage 1 of 6"
    assert stage_of(5, None) == "stage 6"
    assert stage_of(None, [{}]) == "—"
