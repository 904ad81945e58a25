"""The OpenAPI document and the app's routes describe each other exactly."""

from __future__ import annotations

import re
from typing import Any

from openapi_spec_validator import validate

from ccswitch.api.http import Operations
from ccswitch.api.openapi import OPS, document


def _doc_path(canonical: str) -> str:
    # aiohttp regex parameters {id:.+} -> OpenAPI {id}
    return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", canonical)


def test_document_is_valid_openapi_31() -> None:
    doc = document()
    validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_every_route_is_documented_and_every_documented_route_exists(server: Any) -> None:
    app = Operations(server).build_app()
    routes = {(r.method, _doc_path(r.resource.canonical)) for r in app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    doc = document()
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert routes == documented


def test_every_operation_has_a_handler_roles_and_error_statuses() -> None:
    ops = Operations.__dict__
    doc = document()
    for op in OPS:
        assert "h_" + op.name in ops, f"no handler for {op.name}"
        o = doc["paths"][op.path][op.method.lower()]
        assert set(o["x-roles"]) <= {"public", "admin", "supervisor", "agent"}
        if op.roles != ("public",):
            assert {"401", "403"} <= set(o["responses"]), op.name
            assert "admin" in op.roles, f"{op.name}: admins may do everything"
        else:
            assert o["security"] == []
    names = [op.name for op in OPS]
    assert len(names) == len(set(names))


def test_every_schema_reference_resolves() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            ref = x.get("$ref")
            if isinstance(ref, str):
                assert ref.startswith("#/components/schemas/")
                assert ref.rsplit("/", 1)[1] in schemas, ref
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc)
