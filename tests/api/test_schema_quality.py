"""The OpenAPI document is complete for people and generators: every operation has a summary, a
description, its own declared tag, its problem-document responses and examples, and every example
is valid against the schema it illustrates.

Operations keep being added. The checks list every operation that lacks something, each with what
to add to its @extend_schema; a throwaway operation with none of it shows that they catch it."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.urls import path as route
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import extend_schema
from jsonschema import Draft202012Validator
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import StrictSerializer, example_request, example_response, problems

METHODS = ("get", "post", "put", "patch", "delete")
UNTAGGED = "(no tags= given)"


def generate(patterns: list[Any] | None = None) -> dict[str, Any]:
    """The document as `manage.py spectacular` writes it, except that an operation whose
    @extend_schema gives no tags is marked: drf-spectacular would name a tag after the path
    ("canaries" for any new /api/v1/canaries/… operation), which would hide the missing tag."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AutoSchema, "get_tags", lambda self: [UNTAGGED])
        return SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return generate()


def declared_tags() -> list[str]:
    return [tag["name"] for tag in settings.SPECTACULAR_SETTINGS["TAGS"]]


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in schema["paths"].items() for method, op in item.items()
            if method in METHODS]


def where(method: str, path: str, op: dict[str, Any]) -> str:
    return f"{method} {path} ({op.get('operationId')})"


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema's null type, so jsonschema can judge the examples."""
    if isinstance(node, list):
        return [as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "type" not in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def description_gaps(schema: dict[str, Any], tags: list[str]) -> list[str]:
    """One line per thing an operation lacks for a reader, saying what to add."""
    gaps = []
    for method, path, op in operations(schema):
        at = where(method, path, op)
        if not op.get("summary"):
            gaps.append(f'{at}: add summary="…" to its @extend_schema (a short title, as the other operations have)')
        if not op.get("description"):
            gaps.append(f'{at}: add description="…" to its @extend_schema (what it does and who may call it)')
        given = op.get("tags") or [UNTAGGED]
        if UNTAGGED in given:
            gaps.append(f'{at}: add tags=["…"] to its @extend_schema, one of {tags}, or a new tag declared with a '
                        "description in SPECTACULAR_SETTINGS['TAGS'] (canaryhub/settings.py)")
        gaps += [f"{at}: its tag {tag!r} is not declared: add {{'name': {tag!r}, 'description': '…'}} to "
                 "SPECTACULAR_SETTINGS['TAGS'] (canaryhub/settings.py)" for tag in given if tag not in (*tags, UNTAGGED)]
        documented = [s for s, r in op["responses"].items() if "application/problem+json" in r.get("content", {})]
        public = {} in (op.get("security") or [])  # open to anyone: only a bad credential is refused
        if "401" not in documented or ("403" not in documented and not public):
            gaps.append(f"{at}: add **problems(401, 403) (canaryhub.api) to its responses: the refusals")
        if (method == "POST" or op.get("parameters")) and not any(s in documented for s in ("400", "404")):
            gaps.append(f"{at}: add problems(400, …) or problems(404, …) (canaryhub.api) to its responses: what "
                        "bad input gets")
    return gaps


def example_gaps(schema: dict[str, Any]) -> tuple[list[str], int]:
    """One line per JSON body without an example or with one that does not fit its schema; and how
    many examples fit."""
    components = as_json_schema(schema["components"])
    gaps, checked = [], 0
    for method, path, op in operations(schema):
        at = where(method, path, op)
        bodies = [("request", "its request body", op["requestBody"]["content"])] if "requestBody" in op else []
        bodies += [(status, f"its {status} answer", r.get("content", {})) for status, r in op["responses"].items()]
        for status, what, content in bodies:
            for media_type, media in content.items():
                if "json" not in media_type:
                    continue  # the evidence bundle: a zip
                examples = media.get("examples") or {}
                if not examples:
                    helper = "example_request({…})" if status == "request" else f"example_response({{…}}, {status})"
                    gaps.append(f"{at}: {what} ({media_type}) has no example: add examples=[{helper}] "
                                "(canaryhub.api) to its @extend_schema")
                    continue
                validator = Draft202012Validator({**as_json_schema(media["schema"]), "components": components})
                for name, example in examples.items():
                    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                              for e in validator.iter_errors(example["value"])]
                    if errors:
                        gaps.append(f"{at}: example {name!r} of {what} does not fit its schema, correct it: {errors}")
                    else:
                        checked += 1
    return gaps, checked


def test_every_operation_is_described_tagged_and_has_its_problem_responses(schema):
    assert len(operations(schema)) >= 30
    gaps = description_gaps(schema, declared_tags())
    assert not gaps, "operations a reader cannot understand:\n" + "\n".join(gaps)


def test_every_declared_tag_has_a_description_and_is_used(schema):
    used = {tag for _, _, op in operations(schema) for tag in op.get("tags", [])}
    for tag in settings.SPECTACULAR_SETTINGS["TAGS"]:
        assert tag.get("description"), f"SPECTACULAR_SETTINGS['TAGS']: give {tag['name']!r} a description"
        assert tag["name"] in used, f"SPECTACULAR_SETTINGS['TAGS']: no operation is tagged {tag['name']!r}"


def test_every_body_has_an_example_and_every_example_fits_its_schema(schema):
    gaps, checked = example_gaps(schema)
    assert not gaps, "examples missing or wrong:\n" + "\n".join(gaps)
    assert checked > 60


def test_list_filters_declare_no_default_outside_their_enum(schema):
    for method, path, op in operations(schema):
        for parameter in op.get("parameters", []):
            declared = parameter.get("schema", {})
            if "enum" in declared and "default" in declared:
                assert declared["default"] in declared["enum"], (
                    f"{where(method, path, op)}: the filter {parameter['name']!r} declares the default "
                    f"{declared['default']!r}, not one of its values (generators drop the operation): give the "
                    "serializer field default=no_filter (canaryhub.api)")


# --- the checks catch a new operation that lacks what the others have ------------------------------


class _Input(StrictSerializer):
    name = serializers.CharField(max_length=20)


class _Output(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class _Bare(APIView):
    @extend_schema(operation_id="throwaway_create", request=_Input, responses={201: _Output})
    def post(self, request: Request, id: int) -> Response:
        return Response(status=201)  # never called: only its schema is read


class _Documented(APIView):
    @extend_schema(
        operation_id="throwaway_documented_create", request=_Input, tags=["canaries"], summary="Make a throwaway",
        description="What a new operation documents.",
        examples=[example_request({"name": "x"}), example_response({"id": 1, "name": "x"}, 201)],
        responses={201: _Output, **problems(400, 401, 403, 404)},
    )
    def post(self, request: Request, id: int) -> Response:
        return Response(status=201)  # never called: only its schema is read


def test_a_new_operation_without_summary_description_tag_or_examples_fails_saying_what_to_add():
    bare = generate([route("api/v1/canaries/<int:id>/throwaway/", _Bare.as_view())])
    at = "POST /api/v1/canaries/{id}/throwaway/ (throwaway_create)"
    gaps = description_gaps(bare, declared_tags()) + example_gaps(bare)[0]
    expected = [
        f'{at}: add summary="…" to its @extend_schema',
        f'{at}: add description="…" to its @extend_schema',
        f'{at}: add tags=["…"] to its @extend_schema, one of [\'models\',',
        f"{at}: add **problems(401, 403) (canaryhub.api) to its responses",
        f"{at}: add problems(400, …) or problems(404, …)",
        f"{at}: its request body (application/json) has no example: add examples=[example_request({{…}})]",
        f"{at}: its 201 answer (application/json) has no example: add examples=[example_response({{…}}, 201)]",
    ]
    for start in expected:
        assert sum(gap.startswith(start) for gap in gaps) == 1, (start, gaps)
    assert len(gaps) == len(expected), gaps


def test_the_same_operation_documented_passes_unless_its_tag_is_undeclared_or_an_example_wrong():
    documented = generate([route("api/v1/canaries/<int:id>/throwaway/", _Documented.as_view())])
    assert description_gaps(documented, declared_tags()) == []
    gaps, checked = example_gaps(documented)
    assert gaps == [] and checked == 6  # its two, and the four problem documents' from problems()
    renamed = description_gaps(documented, [t for t in declared_tags() if t != "canaries"])
    assert renamed == ["POST /api/v1/canaries/{id}/throwaway/ (throwaway_documented_create): its tag 'canaries' is "
                       "not declared: add {'name': 'canaries', 'description': '…'} to SPECTACULAR_SETTINGS['TAGS'] "
                       "(canaryhub/settings.py)"]
    answer = documented["paths"]["/api/v1/canaries/{id}/throwaway/"]["post"]["responses"]["201"]["content"]
    answer["application/json"]["examples"]["Answer"]["value"] = {"id": "one", "name": "x"}
    assert example_gaps(documented)[0] == [
        "POST /api/v1/canaries/{id}/throwaway/ (throwaway_documented_create): example 'Answer' of its 201 answer "
        "does not fit its schema, correct it: [\"id: 'one' is not of type 'integer'\"]"]
