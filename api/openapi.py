"""The OpenAPI document says what the API really answers, for client generators and schemathesis: every
error as application/problem+json (the `Problem` schema), and the Idempotency-Key header where it is read."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field

from api.idempotency import HEADER, idempotent
from api.problems import PROBLEM_JSON

_REF = "#/components/schemas/{model}"
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


class ProblemFieldError(BaseModel):
    location: list[str | int] = Field(description='where the bad value is, e.g. ["body", "quantity"]')
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, with our stable `code` and `number` (GET /api/v1/errors lists them)."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    number: int
    request_id: str | None
    errors: list[ProblemFieldError] | None = Field(default=None, description="on 422: each invalid field")


_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": _REF.format(model="Problem")}}}
_ANY_ERROR = {
    "4XX": {"description": "The request was refused; `code` says why", "content": _PROBLEM_CONTENT},
    "5XX": {
        "description": "A dependency is unavailable (503 + Retry-After) or a bug",
        "content": _PROBLEM_CONTENT,
    },
}
_IDEMPOTENCY_PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": True,
    "description": "Unique per creating request (e.g. a UUID); a retry with the same key and request gets "
    "the first answer again instead of acting twice",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi
    completed: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        spec = generate()  # cached by FastAPI until routes change; completed in place once per version
        if not completed or completed[-1] is not spec:
            _complete(spec, app)
            completed[:] = [spec]
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(spec: dict[str, Any], app: FastAPI) -> None:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:  # our 422 is a Problem, not FastAPI's default body
        schemas.pop(name, None)
    problem_schema = Problem.model_json_schema(ref_template=_REF)
    schemas.update(problem_schema.pop("$defs"))
    schemas["Problem"] = problem_schema
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            _declare_problems(operation["responses"])
    for route in iter_route_contexts(app.routes):
        if (
            isinstance(route.original_route, APIRoute)
            and route.include_in_schema
            and _reads_idempotency_key(route.endpoint)
        ):
            for method in route.methods:
                operation = spec["paths"][route.path_format][method.lower()]
                operation.setdefault("parameters", []).append(copy.deepcopy(_IDEMPOTENCY_PARAMETER))


def _declare_problems(responses: dict[str, Any]) -> None:
    for status, response in responses.items():
        if status[0] not in "45":
            continue
        content = response.get("content", {})
        schema_ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
        if not content or schema_ref.endswith("/HTTPValidationError"):
            response["content"] = copy.deepcopy(_PROBLEM_CONTENT)
    for status, response in _ANY_ERROR.items():
        responses.setdefault(status, copy.deepcopy(response))


def _reads_idempotency_key(endpoint: Callable[..., Any]) -> bool:
    """Handlers that go through `idempotent(...)`, which refuses a request without the header: found by the
    global names their code calls, so a new creating route is documented without a list to keep."""
    code = getattr(endpoint, "__code__", None)
    return code is not None and idempotent.__name__ in code.co_names
