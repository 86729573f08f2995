"""The table of routes and the permission each needs, generated from the app's
route table and the dashboard's pages: docs/security.rst shows it, and
tests/test_security_docs.py checks that the two agree."""

from __future__ import annotations

import re

import tornado.websocket

from monq.api import dashboard
from monq.api.app import ROUTES
from monq.api.base import BaseHandler

METHODS = ("get", "post", "put", "delete")


def _path(pattern: str) -> str:
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: "{" + m.group(1) + "}", pattern)


def _needs(handler: type[BaseHandler]) -> str:
    if handler.public:
        return "public"
    return f"api://{handler.permission}" if handler.permission else "logged in"


def api_rows() -> list[tuple[str, str, str]]:
    """(route, methods, permission) of every API route."""
    rows = []
    for pattern, handler in ROUTES:
        if issubclass(handler, tornado.websocket.WebSocketHandler):
            rows.append((_path(pattern), "WS", _needs(handler)))
            continue
        methods = [m.upper() for m in METHODS
                   if getattr(handler, m) is not getattr(BaseHandler, m)]
        rows.append((_path(pattern), ", ".join(methods), _needs(handler)))
    return rows


def page_rows() -> list[tuple[str, str, str]]:
    """(page, methods, permission) of every dashboard page."""
    return [(_path(pattern), "GET", "public" if page.public else (
        f"api://{page.permission}" if page.permission else "logged in"))
        for pattern, page in dashboard.PAGES]
