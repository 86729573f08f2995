"""Session handlers: login, logout and the logged-in user's profile."""

from __future__ import annotations

from typing import Any

from monq.api.base import COOKIE, BaseHandler
from monq.core.auth.accounts import PROFILE_FIELDS, parse_etag, public
from monq.core.errors import AuthenticationFailed, BadRequest


class LoginHandler(BaseHandler):
    """POST (JSON or form) or GET (query arguments, for compatibility) with
    username and password; returns ``data.token``, a JWT."""

    public = True
    summary = "log in: returns a token"
    query = {"GET": {"username": str, "password": str}}
    required = {"GET": ("username", "password")}
    bodies = {"POST": {"type": "object", "required": ["username", "password"],
                       "properties": {"username": {"type": "string", "maxLength": 64},
                                      "password": {"type": "string", "maxLength": 1024}},
                       "additionalProperties": False}}

    async def _login(self, username: Any, password: Any) -> None:
        if not isinstance(username, str) or not isinstance(password, str) or not username:
            raise BadRequest("username and password: required strings")
        principal = await self.ctx.accounts.login(username, password, self.request.remote_ip
                                                  or "unknown")
        token = self.issue_token(principal)
        self.reply({"token": token, "username": principal.name})

    async def post(self) -> None:
        body = self.body()
        await self._login(body.get("username"), body.get("password"))

    async def get(self) -> None:
        await self._login(self.args.get("username"), self.args.get("password"))


class LogoutHandler(BaseHandler):
    """Revoke every token of the logged-in user."""

    summary = "log out: revoke the user's tokens"

    async def post(self) -> None:
        assert self.principal is not None
        await self.ctx.accounts.logout(self.principal.name)
        self.clear_cookie(COOKIE, path="/")
        self.reply(None)


class ProfileHandler(BaseHandler):
    """The logged-in user's record; PUT changes realname, email, password or
    language (never their own roles or permissions)."""

    permission = "monq.api.auth.profile"
    summary = "the logged-in user's profile"
    bodies = {"PUT": {"type": "object", "required": ["etag"], "properties": {
        "etag": {"type": "string"}, "realname": {"type": "string"},
        "email": {"type": "string"}, "password": {"type": "string"},
        "language": {"type": "string"}}, "additionalProperties": False}}

    async def _record(self) -> dict[str, Any]:
        assert self.principal is not None
        doc = await self.ctx.accounts.by_name(self.principal.name)
        if doc is None:
            raise AuthenticationFailed("invalid or expired token")
        return doc

    async def get(self) -> None:
        assert self.principal is not None
        doc = public(await self._record())
        doc["permissions"] = sorted(self.principal.permissions)
        doc["roles"] = sorted(self.principal.roles)
        self.reply(doc)

    async def put(self) -> None:
        assert self.principal is not None
        body = self.body()
        etag = parse_etag(body.pop("etag", None))
        current = await self._record()
        doc = await self.ctx.accounts.update(current["_id"], etag, body, self.principal,
                                             allowed=PROFILE_FIELDS)
        if "password" in body:  # the old tokens are revoked: hand out a fresh one
            principal = await self.ctx.accounts.principal(doc["name"])
            if principal is not None:
                self.issue_token(principal)
        self.reply(public(doc))
