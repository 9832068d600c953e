"""The input rules every API serializer shares: text is measured as sent."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from canaryhub.api import StrictCharField, StrictSerializer


class Note(StrictSerializer):
    title = serializers.CharField(max_length=5)
    body = StrictCharField(max_length=5)
    tags = serializers.ListField(child=StrictCharField(max_length=3), required=False)
    labels = serializers.DictField(child=StrictCharField(max_length=3), required=False)


@pytest.mark.parametrize("field", ["title", "body"])
@pytest.mark.parametrize("padding", ["\r", "\n", " ", "\t"])
def test_text_one_character_over_the_limit_is_refused_even_when_trimming_would_fit_it(field, padding):
    data = {"title": "ok", "body": "ok", field: padding + "x" * 5}
    note = Note(data=data)
    assert not note.is_valid()
    assert list(note.errors) == [field] and "no more than 5" in str(note.errors[field][0])


def test_list_items_and_dict_values_are_measured_as_sent_too():
    note = Note(data={"title": "ok", "body": "ok", "tags": ["\nabc"]})
    assert not note.is_valid() and "tags" in note.errors
    note = Note(data={"title": "ok", "body": "ok", "labels": {"region": "abc\r"}})
    assert not note.is_valid() and "labels" in note.errors


def test_text_within_the_limit_is_still_trimmed():
    note = Note(data={"title": " abc ", "body": "\nab", "tags": [" a"]})
    assert note.is_valid(), note.errors
    assert note.validated_data == {"title": "abc", "body": "ab", "tags": ["a"]}
