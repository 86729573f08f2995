"""Builds the OpenAPI document from the route table and each handler's declarations
(permission, query parameters, summary)."""

from __future__ import annotations

import re
from typing import Any

import tornado.websocket

from monq import __version__
from monq.api.base import BaseHandler
from monq.api.bodies import NO_BODY

_TYPES = {int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"},
          str: {"type": "string"}}
_ENVELOPE = {"type": "object", "required": ["_id", "code", "message", "timestamp"],
             "properties": {"_id": {"type": "string"}, "code": {"type": "integer"},
                            "message": {"type": "string"}, "timestamp": {"type": "string"},
                            "data": {},
                            # paginated replies (DESIGN.md section 6), and their keysets
                            "page": {"type": "integer"}, "per_page": {"type": "integer"},
                            "page_count": {"type": "integer"}, "count": {"type": "integer"},
                            "total_count": {"type": "integer"},
                            "total_capped": {"type": "boolean", "description":
                                             "total_count stopped at api.count_limit"},
                            "next_after": {"type": ["string", "null"]},
                            "next_before": {"type": ["string", "null"]}}}
METHODS = ("get", "post", "put", "delete")


def _path(pattern: str) -> tuple[str, list[str]]:
    names: list[str] = []

    def group(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return "{" + match.group(1) + "}"

    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", group, pattern).rstrip("$")
    return path, names


def _content(handler: type[BaseHandler], code: str) -> dict[str, Any]:
    """A reply's media type and schema: the JSON envelope, but for the 200 reply of a
    handler that produces something else (the text of /metrics)."""
    if code == "200" and handler.produces != "application/json":
        return {handler.produces: {"schema": {"type": "string"}}}
    return {"application/json": {"schema": _ENVELOPE}}


def describe(routes: list[tuple[str, type[BaseHandler]]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    websockets: dict[str, Any] = {}
    for pattern, handler in routes:
        path, names = _path(pattern)
        if issubclass(handler, tornado.websocket.WebSocketHandler):
            # not an HTTP operation: listed apart (protocol: DESIGN.md section 8)
            websockets[path] = {"summary": handler.summary,
                                "x-permission": f"api://{handler.permission}"}
            continue
        item: dict[str, Any] = {}
        for method in METHODS:
            if getattr(handler, method) is getattr(BaseHandler, method):
                continue
            params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                      for n in names]
            required = handler.required.get(method.upper(), ())
            for name, kind in handler.query.get(method.upper(), {}).items():
                param = {"name": name, "in": "query", "required": name in required,
                         "schema": _TYPES.get(kind, {"type": "string", "format": "date-time"})}
                if name in handler.query_docs:
                    param["description"] = handler.query_docs[name]
                params.append(param)
            operation: dict[str, Any] = {
                "summary": handler.summary or (handler.__doc__ or "").strip().split("\n")[0],
                "operationId": f"{handler.__name__}.{method}",
                "parameters": params,
                "responses": {code: {"description": text, "content": _content(handler, code)}
                              for code, text in (
                    ("200", "OK"), ("201", "created"), ("400", "bad request"),
                    ("401", "not logged in"), ("403", "permission denied"),
                    ("404", "not found"), ("409", "conflict"),
                    ("412", "the etag is not current"), ("413", "body too large"),
                    ("429", "too many attempts"),
                    ("503", "MongoDB does not answer"))},
                "x-permission": None if handler.public else (
                    f"api://{handler.permission}" if handler.permission else "logged in"),
            }
            if method in ("post", "put"):
                body = handler.bodies.get(method.upper(), NO_BODY)
                operation["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": body}}}
            if not handler.public:
                operation["security"] = [{"bearer": []}]
            item[method] = operation
        paths[path] = item
    return {"openapi": "3.1.0", "info": {"title": "monq", "version": __version__},
            "paths": paths, "x-websockets": websockets, "components": {"securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}}
