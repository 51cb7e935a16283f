"""The OpenAPI document shows a client how to call each operation (issue 12): every request body carries an
example the API accepts, and the security schemes it names are declared."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import TypeAdapter

from api.app import create_app
from tests.conftest import make_settings

Spec = dict[str, Any]


@pytest.fixture(scope="module")
def app() -> FastAPI:  # the document needs no database: nothing here is called
    return create_app(make_settings(database_url="postgresql+asyncpg://unused/unused"))


@pytest.fixture(scope="module")
def spec(app: FastAPI) -> Spec:
    return app.openapi()  # what /openapi.json answers


def _operations(spec: Spec) -> list[tuple[str, Spec]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def _schema_examples(spec: Spec, schema: Spec) -> list[Any]:
    """The examples a schema gives, looking through $ref and the non-null branches of anyOf/oneOf (an
    optional body is `anyOf: [{$ref: Model}, {type: null}]`)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return _schema_examples(spec, spec["components"]["schemas"][name])
    found = list(schema.get("examples", [])) + ([schema["example"]] if "example" in schema else [])
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        if branch.get("type") != "null":
            found += _schema_examples(spec, branch)
    return found


def _body_examples(spec: Spec, operation: Spec) -> list[Any]:
    found: list[Any] = []
    for media in operation["requestBody"]["content"].values():
        found += [media["example"]] if "example" in media else []
        found += [example["value"] for example in media.get("examples", {}).values()]
        found += _schema_examples(spec, media.get("schema", {}))
    return found


def test_every_request_body_carries_an_example(spec: Spec) -> None:
    with_body = [(name, op) for name, op in _operations(spec) if "requestBody" in op]
    assert len(with_body) > 20  # the walk sees the API's bodies
    missing = [name for name, operation in with_body if not _body_examples(spec, operation)]
    assert missing == [], "request bodies without an example:\n" + "\n".join(missing)


def test_request_body_examples_are_accepted_by_the_api(app: FastAPI, spec: Spec) -> None:
    """Each example passes the validation the route itself applies (constraints, model validators)."""
    checked = 0
    for route in iter_route_contexts(app.routes):
        endpoint = route.original_route
        if not isinstance(endpoint, APIRoute) or endpoint.body_field is None or not route.include_in_schema:
            continue  # bodies read by hand (the codec's protobuf JSON) have no model to check against
        body = TypeAdapter(endpoint.body_field.field_info.annotation)
        for method in route.methods:
            for example in _body_examples(spec, spec["paths"][route.path_format][method.lower()]):
                body.validate_python(example)
                checked += 1
    assert checked > 20


def test_security_schemes_are_declared_and_used(spec: Spec) -> None:
    declared = set(spec["components"]["securitySchemes"])
    assert {"bearerAuth", "apiKeyAuth"} <= declared
    used = {
        name for _, op in _operations(spec) for requirement in op.get("security", []) for name in requirement
    }
    assert used == declared, f"declared but unused: {declared - used}; used but undeclared: {used - declared}"
    admin = spec["paths"]["/api/v1/admin/vendors"]["post"]
    assert {"bearerAuth": []} in admin["security"]
