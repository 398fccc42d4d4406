"""docs/swagger.yaml agrees with the code: the routes the gateway serves, the request bodies and
query parameters its handlers validate (the pydantic models of `schemas/api.py`), and the
generated docs/swagger.json.

The models are the truth: when a test here fails, change the YAML (then run
`python scripts/openapi_json.py`), unless the code is what is wrong.
The schema comparison (`schema_differences`) is shared with tests/unit/test_asyncapi_spec.py.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from aiohttp import web
from openapi_spec_validator import validate
from pydantic import BaseModel

from config.settings import GatewaySettings
from gateway.app import create_app

ROOT = Path(__file__).resolve().parents[2]
SWAGGER_YAML = ROOT / "docs" / "swagger.yaml"
SWAGGER_JSON = ROOT / "docs" / "swagger.json"

UNDOCUMENTED_PREFIXES = ("/docs", "/app")
"""The spec and Swagger UI themselves, and the web client's files; they are not part of the API."""
UNDOCUMENTED_ROUTES = {("GET", "/api/v1/ws"), ("GET", "/")}
"""The WebSocket upgrade (documented in docs/asyncapi.yaml) and the web client's page (docs/web-client.md)."""

LIMIT_KEYS = (
    "format",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "uniqueItems",
)
MISSING = "<absent>"

NOT_ENVELOPED = {("GET", "/healthz", "503")}
"""A degraded /healthz answers 503 with the health report itself, which probes and operators
read; contract v1 asks every non-2xx answer to be the error envelope, so this one is noted."""

Schema = Mapping[str, Any]


# --- schema comparison (shared with test_asyncapi_spec.py) ----------------------------------------


def deref(schema: Schema, root: Schema) -> Schema:
    """`schema` with local `$ref`s (`#/components/...`, `#/$defs/...`) followed."""
    while "$ref" in schema:
        pointer = schema["$ref"]
        assert pointer.startswith("#/"), f"only local references are supported: {pointer}"
        target: Any = root
        for part in pointer[2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _merge_single(schema: Schema, key: str, branch: Schema) -> dict[str, Any]:
    return {**{k: v for k, v in schema.items() if k != key}, **branch}


def normalized(schema: Schema, root: Schema) -> dict[str, Any]:
    """The parts of a JSON/OpenAPI schema that say what is valid, in one canonical form.

    Pydantic writes `X | None` as `anyOf: [X, {type: null}]`, OpenAPI 3.0 as `nullable: true`,
    AsyncAPI as `type: [x, "null"]`: all become `nullable: True`. A `const` becomes a one-value
    `enum`; titles, descriptions and examples are dropped, and so are `default: null` and
    `additionalProperties: true`, which say nothing.
    """
    schema = deref(schema, root)
    nullable = bool(schema.get("nullable"))
    for key in ("anyOf", "oneOf", "allOf"):
        if key not in schema:
            continue
        branches = [deref(branch, root) for branch in schema[key]]
        others = [branch for branch in branches if branch.get("type") != "null"]
        nullable = nullable or len(others) < len(branches)
        if len(others) == 1:
            inner = normalized(_merge_single(schema, key, others[0]), root)
            return {**inner, "nullable": True} if nullable else inner
        schema = {**schema, key: others}
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        nullable = nullable or "null" in kind
        rest = sorted(t for t in kind if t != "null")
        kind = rest[0] if len(rest) == 1 else rest
    if kind is not None:
        out["type"] = kind
    if "const" in schema:
        out["enum"] = [schema["const"]]
    elif "enum" in schema:
        out["enum"] = sorted(schema["enum"], key=str)
    out.update({key: schema[key] for key in LIMIT_KEYS if key in schema})
    if schema.get("default") is not None:
        out["default"] = schema["default"]
    if schema.get("additionalProperties") is False:
        out["additionalProperties"] = False
    if "properties" in schema:
        out["properties"] = {name: normalized(prop, root) for name, prop in schema["properties"].items()}
    if schema.get("required"):
        out["required"] = sorted(schema["required"])
    if "items" in schema:
        out["items"] = normalized(schema["items"], root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            out["oneOf"] = [normalized(branch, root) for branch in schema[key]]
    if nullable:
        out["nullable"] = True
    return out


def differences(code: Schema, doc: Schema, where: str) -> list[str]:
    """Each way two normalized schemas differ, as `where.field: ...` lines."""
    found: list[str] = []
    for key in sorted(set(code) | set(doc)):
        if key == "properties":
            found += _property_differences(code.get(key, {}), doc.get(key, {}), where)
        elif key == "items":
            found += differences(code.get(key, {}), doc.get(key, {}), f"{where}[]")
        elif key == "oneOf" and len(code.get(key, [])) == len(doc.get(key, [])):
            for index, (mine, theirs) in enumerate(zip(code[key], doc[key], strict=True)):
                found += differences(mine, theirs, f"{where}|{index}")
        elif code.get(key, MISSING) != doc.get(key, MISSING):
            found.append(
                f"{where}: {key} is {code.get(key, MISSING)!r} in the code but {doc.get(key, MISSING)!r} in the doc"
            )
    return found


def _property_differences(code: Schema, doc: Schema, where: str) -> list[str]:
    found: list[str] = []
    for name in sorted(set(code) | set(doc)):
        if name not in doc:
            found.append(f"{where}.{name}: a field of the code, missing from the doc")
        elif name not in code:
            found.append(f"{where}.{name}: in the doc, but the code has no such field")
        else:
            found += differences(code[name], doc[name], f"{where}.{name}")
    return found


def schema_differences(model: type[BaseModel], doc_schema: Schema, doc_root: Schema, where: str) -> list[str]:
    """How `doc_schema` (in the document `doc_root`) disagrees with `model.model_json_schema()`."""
    code_schema = model.model_json_schema()
    return differences(normalized(code_schema, code_schema), normalized(doc_schema, doc_root), where)


# --- the spec and the app -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded = yaml.safe_load(SWAGGER_YAML.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def app() -> web.Application:
    """The real application, built but never started (so no service is needed)."""
    return create_app(GatewaySettings(jwt_secret="0123456789abcdef" * 2))


def documented(path: str) -> bool:
    return not any(path == prefix or path.startswith(prefix + "/") for prefix in UNDOCUMENTED_PREFIXES)


def served_routes(app: web.Application) -> dict[tuple[str, str], Callable[..., Any]]:
    """(METHOD, path) -> handler of every route of the app that the spec must describe.

    HEAD is left out: aiohttp adds it to every GET route by itself.
    """
    routes = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        key = (route.method.upper(), path)
        if route.method == "HEAD" or not documented(path) or key in UNDOCUMENTED_ROUTES:
            continue
        routes[key] = route.handler
    return routes


def spec_operations(spec: Schema) -> Iterator[tuple[tuple[str, str], Schema]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in methods:
                yield (method.upper(), path), operation


def handler_models(handler: Callable[..., Any]) -> tuple[type[BaseModel] | None, type[BaseModel] | None]:
    """The models a handler validates its body (`parse_body`) and its query (`query`) with."""
    source = inspect.getsource(handler)
    found: list[type[BaseModel] | None] = []
    for call in ("parse_body", "query"):
        match = re.search(rf"\b{call}\(\s*request\s*,\s*(\w+)\s*[,)]", source)
        found.append(handler.__globals__[match.group(1)] if match else None)
    return found[0], found[1]


def body_schema(operation: Schema) -> Schema | None:
    body = operation.get("requestBody")
    if body is None:
        return None
    return body["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def query_parameters(operation: Schema, spec: Schema) -> dict[str, Schema]:
    parameters = (deref(p, spec) for p in operation.get("parameters", []))
    return {p["name"]: p for p in parameters if p["in"] == "query"}


def load_json_script() -> ModuleType:
    """scripts/openapi_json.py, which is no package module."""
    location = ROOT / "scripts" / "openapi_json.py"
    module_spec = importlib.util.spec_from_file_location("openapi_json", location)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


# --- tests ----------------------------------------------------------------------------------------


def test_swagger_yaml_is_valid_openapi(spec: dict[str, Any]) -> None:
    validate(spec)


def test_swagger_json_is_generated_from_the_yaml(spec: dict[str, Any]) -> None:
    assert json.loads(SWAGGER_JSON.read_text(encoding="utf-8")) == spec, (
        "docs/swagger.json differs from docs/swagger.yaml: run `python scripts/openapi_json.py`"
    )
    script = load_json_script()
    assert SWAGGER_JSON.read_text(encoding="utf-8") == script.render_json(spec), (
        "docs/swagger.json is not formatted as scripts/openapi_json.py writes it: run it"
    )


def test_every_served_route_is_documented_and_every_documented_one_is_served(
    app: web.Application, spec: dict[str, Any]
) -> None:
    served = set(served_routes(app))
    in_spec = {key for key, _ in spec_operations(spec)}
    undocumented = sorted(served - in_spec)
    not_served = sorted(in_spec - served)
    assert not undocumented and not not_served, (
        f"routes the gateway serves but docs/swagger.yaml lacks: {undocumented}; "
        f"operations docs/swagger.yaml describes but the gateway does not serve: {not_served}"
    )


def test_the_docs_routes_are_registered(app: web.Application) -> None:
    paths = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    for path in ("/docs", "/docs/swagger.json", "/docs/swagger.yaml"):
        assert ("GET", path) in paths


def test_request_bodies_match_the_models_the_handlers_validate(app: web.Application, spec: dict[str, Any]) -> None:
    operations = dict(spec_operations(spec))
    problems: list[str] = []
    for key, handler in sorted(served_routes(app).items()):
        if key not in operations:
            continue  # reported by the route test
        model, _ = handler_models(handler)
        schema = body_schema(operations[key])
        label = f"{key[0]} {key[1]}"
        if model is None and schema is not None:
            problems.append(f"{label}: the doc has a request body, the handler reads none")
        elif model is not None and schema is None:
            problems.append(f"{label}: the handler reads a {model.__name__} body, the doc has none")
        elif model is not None and schema is not None:
            expected_ref = f"#/components/schemas/{model.__name__}"
            if schema.get("$ref") != expected_ref:
                problems.append(f"{label}: the body should be {expected_ref}, the doc says {schema}")
            problems += schema_differences(model, schema, spec, f"{label} body ({model.__name__})")
    assert not problems, "docs/swagger.yaml disagrees with schemas/api.py:\n  " + "\n  ".join(problems)


def test_query_parameters_match_the_models_the_handlers_validate(app: web.Application, spec: dict[str, Any]) -> None:
    operations = dict(spec_operations(spec))
    problems: list[str] = []
    for key, handler in sorted(served_routes(app).items()):
        if key not in operations:
            continue
        _, model = handler_models(handler)
        problems += query_differences(model, query_parameters(operations[key], spec), spec, f"{key[0]} {key[1]}")
    assert not problems, "docs/swagger.yaml disagrees with schemas/api.py:\n  " + "\n  ".join(problems)


def query_differences(
    model: type[BaseModel] | None, documented_params: dict[str, Schema], spec: Schema, label: str
) -> list[str]:
    """A query model's fields are the operation's query parameters, none required unless the
    model requires it; a query string cannot say null, so `X | None` is just an optional X."""
    if model is None:
        return [f"{label}: query parameter {name} in the doc, the handler reads none" for name in documented_params]
    code = model.model_json_schema()
    required = set(code.get("required", []))
    problems: list[str] = []
    for name, prop in code["properties"].items():
        if name not in documented_params:
            problems.append(f"{label}: query parameter {name} ({model.__name__}) is missing from the doc")
            continue
        param = documented_params[name]
        if bool(param.get("required")) != (name in required):
            problems.append(f"{label}: query parameter {name} should have required={name in required}")
        mine = normalized(prop, code)
        mine.pop("nullable", None)
        problems += differences(mine, normalized(param["schema"], spec), f"{label} ?{name}")
    problems += [
        f"{label}: query parameter {name} in the doc, but {model.__name__} has no such field"
        for name in documented_params
        if name not in code["properties"]
    ]
    return problems


def test_operations_document_their_error_answers(spec: dict[str, Any]) -> None:
    """Authenticated calls can answer 401, calls with a body 400 and 413; every error answer
    is the contract's envelope."""
    problems = []
    for (method, path), operation in spec_operations(spec):
        statuses = set(operation["responses"])
        authenticated = operation.get("security", spec.get("security")) != []
        needed = ({"401"} if authenticated else set()) | ({"400", "413"} if "requestBody" in operation else set())
        if needed - statuses:
            problems.append(f"{method} {path} lacks {sorted(needed - statuses)}")
        for status, reference in operation["responses"].items():
            response = deref(reference, spec)
            if int(status) >= 400 and (method, path, status) not in NOT_ENVELOPED:
                schema = response["content"]["application/json"]["schema"]
                if schema != {"$ref": "#/components/schemas/Error"}:
                    problems.append(f"{method} {path} {status} is not the error envelope")
    assert not problems, "\n".join(problems)


def test_a_disagreement_is_reported_with_the_field_and_both_values(spec: dict[str, Any]) -> None:
    """The comparison itself: a spec with a wrong limit and an extra field is caught."""
    from schemas.api import RegisterBody

    broken = copy.deepcopy(spec)
    properties = broken["components"]["schemas"]["RegisterBody"]["properties"]
    properties["password"]["maxLength"] = 255
    properties["nickname"] = {"type": "string"}
    found = schema_differences(RegisterBody, {"$ref": "#/components/schemas/RegisterBody"}, broken, "RegisterBody")
    assert found == [
        "RegisterBody.nickname: in the doc, but the code has no such field",
        "RegisterBody.password: maxLength is 256 in the code but 255 in the doc",
    ]


def test_resources_have_the_fields_of_schemas_models(spec: dict[str, Any]) -> None:
    """User, Chat, Member and Message list the fields the gateway sends (all of them, always)."""
    from schemas import models

    for model in (models.User, models.Chat, models.Member, models.Message):
        schema = spec["components"]["schemas"][model.__name__]
        assert set(schema["properties"]) == set(model.model_fields), model.__name__
        assert set(schema["required"]) == set(model.model_fields), model.__name__
