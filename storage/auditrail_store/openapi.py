"""The store service's API contract beyond what FastAPI derives: every response an operation can give, the
OTLP/JSON request body of ``POST /v1/logs``, and ``Allow`` headers that name every method of a path.

tests/test_store_openapi.py runs schemathesis with every check (``--checks all``) against the live service: the
document must describe what the service does, and the service must do what the document says.

``POST /v1/logs`` documents its OTLP/JSON body as the JSON Schema below: the shapes pdata's OTLP/JSON reader
(ingest.decode_json) accepts, camelCase names (snake_case ones are read too), absent or null meaning empty.
Protobuf bodies (``application/x-protobuf``, the same request in OTLP's protobuf encoding) are described in the
operation's text only: which bytes are a valid protobuf message is not something a JSON Schema can say.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .db import TENANT_SYNTAX

__all__ = ["OTLP_LOGS_BODY", "Error", "OtlpStatus", "install_allow_handler", "install_otlp_schemas", "responses"]


class Error(BaseModel):
    """An error: what went wrong, in one sentence."""

    detail: str


class OtlpStatus(BaseModel):
    """An OTLP/HTTP error (google.rpc.Status): in JSON for JSON requests, in protobuf for protobuf ones."""

    code: int
    message: str


_WHY = {
    400: "the request is malformed or names what the store refuses (the sentence says which); nothing was done",
    401: "no valid bearer token (WWW-Authenticate: Bearer)",
    403: "the token's scope or tenant does not allow this",
    404: "no such resource",
    408: "the request body did not arrive within the body timeout (the connection is closed); nothing was written",
    413: "over a limit (body bytes, records, bytes of a record, messages, distinct attribute keys, attributes the rows hold), named in the message; nothing written",
}


def responses(*codes: int, otlp: bool = False) -> dict[int | str, dict[str, Any]]:
    """The error responses `codes` of an operation, for its ``responses=``: FastAPI's ``{"detail"}`` errors, or
    (`otlp`) google.rpc.Status in the request's encoding for the ingest route's own refusals."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:  # (422, FastAPI's validation error, it declares itself on every route with parameters)
        if otlp and code in (400, 403, 413):
            # (403: a token without the ingest scope is refused before the request is read, as on every route)
            schema = ({"anyOf": [OtlpStatus.model_json_schema(), Error.model_json_schema()]} if code == 403
                      else OtlpStatus.model_json_schema())
            out[code] = {"description": _WHY[code],
                         "content": {"application/json": {"schema": schema},
                                     "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}}}
        else:
            out[code] = {"description": _WHY[code], "model": Error}
    if 401 in codes:
        out[401]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
    return out


# --- the OTLP/JSON body (opentelemetry-proto, ExportLogsServiceRequest), as ingest.decode_json reads it ------

def _maybe(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or null (the reader takes null as absent)."""
    return {"anyOf": [schema, {"type": "null"}]}


def _digits_at_most(limit: int) -> str:
    """A regular expression of the decimal numbers 0..`limit` (leading zeros allowed, as int() reads them)."""
    text = str(limit)
    shorter = f"[0-9]{{1,{len(text) - 1}}}" if len(text) > 1 else None
    options = [shorter] if shorter else []
    for i, digit in enumerate(text):
        if digit != "0":
            below = "0" if digit == "1" else f"[0-{int(digit) - 1}]"
            rest = len(text) - i - 1
            options.append(text[:i] + below + (f"[0-9]{{{rest}}}" if rest else ""))
    options.append(text)
    return "0*(" + "|".join(options) + ")"


def _integer(low: int, high: int) -> dict[str, Any]:
    """An integer low..high as OTLP/JSON writes it: a number, or its decimal text (int64s are strings)."""
    text = _digits_at_most(high) if low >= 0 else f"(-{_digits_at_most(-low)}|{_digits_at_most(high)})"
    return {"anyOf": [{"type": "integer", "minimum": low, "maximum": high},
                      {"type": "string", "pattern": f"^{text}$"}]}


# Times: unsigned 64-bit ns, but from 2^63 on refused (validation.py: the store cannot hold them faithfully).
_TIME = _maybe(_integer(0, 2**63 - 1))
_STRING = _maybe({"type": "string"})
_DEFS: dict[str, Any] = {
    # A value: an object with one of stringValue, boolValue, intValue (int64, as a string or a number),
    # doubleValue (a number, or "NaN", "Infinity", "-Infinity"), bytesValue (base64), arrayValue {values: [AnyValue]}
    # or kvlistValue {values: KeyValues}; the first of them present is read. (Left open here: where an object
    # names several, which one counts is an order JSON Schema cannot state.)
    "AnyValue": _maybe({"type": "object"}),
    "KeyValues": _maybe({"type": "array", "items": {"type": "object", "properties": {
        "key": _STRING, "value": {"$ref": "#/components/schemas/OtlpAnyValue"}}}}),
    "LogRecord": _maybe({"type": "object", "properties": {
        "timeUnixNano": _TIME, "observedTimeUnixNano": _TIME,
        "severityNumber": _maybe({"anyOf": [*_integer(-(2**31), 2**31 - 1)["anyOf"],
                                            {"type": "string", "enum": list(SeverityNumber.keys())}]}),
        "severityText": _STRING,
        "body": {"$ref": "#/components/schemas/OtlpAnyValue"},
        "attributes": {"$ref": "#/components/schemas/OtlpKeyValues",
                       "description": "audit.tenant_id, when present, must be a tenant id: " + TENANT_SYNTAX
                                      + " (else 400, naming the record)"},
        "flags": _maybe(_integer(0, 2**32 - 1)),
        "traceId": _maybe({"type": "string", "pattern": "^([0-9a-fA-F]{32})?$"}),
        "spanId": _maybe({"type": "string", "pattern": "^([0-9a-fA-F]{16})?$"}),
        "eventName": _STRING}}),
    "Scope": _maybe({"type": "object", "properties": {
        "name": _STRING, "version": _STRING, "attributes": {"$ref": "#/components/schemas/OtlpKeyValues"}}}),
    "ScopeLogs": _maybe({"type": "object", "properties": {
        "scope": {"$ref": "#/components/schemas/OtlpScope"}, "schemaUrl": _STRING,
        "logRecords": _maybe({"type": "array", "items": {"$ref": "#/components/schemas/OtlpLogRecord"}})}}),
    "ResourceLogs": _maybe({"type": "object", "properties": {
        "resource": _maybe({"type": "object", "properties": {"attributes": {"$ref": "#/components/schemas/OtlpKeyValues"}}}),
        "schemaUrl": _STRING,
        "scopeLogs": _maybe({"type": "array", "items": {"$ref": "#/components/schemas/OtlpScopeLogs"}})}}),
}
OTLP_LOGS_JSON: dict[str, Any] = {
    "title": "ExportLogsServiceRequest (OTLP/JSON)",
    "anyOf": [{"type": "object", "properties": {
        "resourceLogs": _maybe({"type": "array", "items": {"$ref": "#/components/schemas/OtlpResourceLogs"}})}},
        {"type": "null"}],
}
OTLP_LOGS_BODY: dict[str, Any] = {"requestBody": {
    "required": True,
    "description": "an OTLP ExportLogsServiceRequest: application/json (this schema) or application/x-protobuf "
                   "(the same message, protobuf-encoded); Content-Encoding gzip or deflate optional",
    "content": {"application/json": {"schema": OTLP_LOGS_JSON}}}}


def install_otlp_schemas(app: FastAPI) -> None:
    """Add the OTLP/JSON schemas (``OtlpAnyValue``, ``OtlpLogRecord``...) to the document's components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()  # FastAPI's, cached
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update({f"Otlp{name}": schema for name, schema in _DEFS.items()})
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# --- Allow ------------------------------------------------------------------------------------------------

def install_allow_handler(app: FastAPI) -> None:
    """Answer OPTIONS with 204 and, like a method a path does not have, 405 with an ``Allow`` header naming
    every method of every route of that path (Starlette names only the first route's: ``POST`` for
    /v1/admin/tokens, which also has GET)."""

    def allowed(request: Request) -> list[str]:
        methods: set[str] = set()
        for route in app.router.routes:
            match, _ = route.matches({**request.scope, "method": "\0"})  # any method: a path match is PARTIAL
            if match is not Match.NONE:
                methods |= set(getattr(route, "methods", None) or ())
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods | {"OPTIONS"}) if methods else []

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        headers = dict(error.headers or {})
        if error.status_code == 405:
            methods = allowed(request)
            headers["Allow"] = ", ".join(methods)
            if request.method == "OPTIONS" and methods:
                return Response(status_code=204, headers=headers)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=headers)
