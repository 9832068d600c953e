"""The OpenAPI document is complete for people and generators: every operation has a summary, a
description, its tag, its problem-document responses and examples, and every example is valid
against the schema it illustrates."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from jsonschema import Draft202012Validator

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in schema["paths"].items() for method, op in item.items()
            if method in METHODS]


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


def test_every_operation_is_described_tagged_and_has_its_problem_responses(schema):
    ops = operations(schema)
    assert len(ops) >= 30
    for method, path, op in ops:
        where = f"{method} {path}"
        assert op.get("summary") and op.get("description"), f"{where}: no summary or description"
        assert op.get("tags") and "v1" not in op["tags"], f"{where}: no tag of its own"
        problems = [s for s, r in op["responses"].items() if "application/problem+json" in r.get("content", {})]
        assert "401" in problems and "403" in problems, f"{where}: refusals undocumented"
        if method == "POST" or op.get("parameters"):
            assert problems and any(s in problems for s in ("400", "404")), f"{where}: bad input undocumented"


def test_every_body_has_an_example_and_every_example_fits_its_schema(schema):
    components = as_json_schema(schema["components"])
    checked = 0
    for method, path, op in operations(schema):
        bodies = [("request", op["requestBody"]["content"])] if "requestBody" in op else []
        bodies += [(f"response {status}", r.get("content", {})) for status, r in op["responses"].items()]
        for what, content in bodies:
            for media_type, media in content.items():
                if "json" not in media_type:
                    continue  # the evidence bundle: a zip
                examples = media.get("examples") or {}
                assert examples, f"{method} {path} {what} ({media_type}): no example"
                validator = Draft202012Validator({**as_json_schema(media["schema"]), "components": components})
                for name, example in examples.items():
                    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                              for e in validator.iter_errors(example["value"])]
                    assert not errors, f"{method} {path} {what} example {name!r}: {errors}"
                    checked += 1
    assert checked > 60


def test_list_filters_declare_no_default_outside_their_enum(schema):
    for method, path, op in operations(schema):
        for parameter in op.get("parameters", []):
            declared = parameter.get("schema", {})
            if "enum" in declared and "default" in declared:
                assert declared["default"] in declared["enum"], f"{method} {path} {parameter['name']}"
