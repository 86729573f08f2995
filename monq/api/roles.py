"""Users and roles (core4-compatible): GET/POST /roles, GET/PUT/DELETE /roles/{id}.
PUT and DELETE need the record's current etag."""

from __future__ import annotations

from monq.api.base import BaseHandler
from monq.core.auth.accounts import parse_etag, parse_id, public

RECORD = {"name": {"type": "string", "maxLength": 64},
          "realname": {"type": "string", "maxLength": 256},
          "email": {"type": "string", "maxLength": 320},
          "password": {"type": "string", "maxLength": 1024},
          "role": {"type": "array", "maxItems": 100,
                   "items": {"type": "string", "maxLength": 64}},
          "perm": {"type": "array", "maxItems": 500,
                   "items": {"type": "string", "maxLength": 256}},
          "is_active": {"type": "boolean"}, "language": {"type": "string", "maxLength": 16}}


class RolesHandler(BaseHandler):
    permission = "monq.api.roles"
    summary = "list (paginated, filter by name or role) and create users and roles"
    query = {"GET": {"page": int, "per_page": int, "name": str, "role": str}}
    bodies = {"POST": {"type": "object", "required": ["name"], "properties": RECORD,
                       "additionalProperties": False}}

    async def get(self) -> None:
        page, per_page = self.page_args()
        docs, total = await self.ctx.accounts.page(
            name=self.args.get("name"), role=self.args.get("role"), skip=page * per_page,
            limit=per_page)
        self.reply_page([public(d) for d in docs], total, page, per_page)

    async def post(self) -> None:
        assert self.principal is not None
        doc = await self.ctx.accounts.create(self.body(), self.principal)
        self.reply(public(doc), code=201, message="Created")


class RoleHandler(BaseHandler):
    permission = "monq.api.roles"
    summary = "one user or role: read, change (with etag), delete (with etag)"
    query = {"DELETE": {"etag": str}}
    bodies = {"PUT": {"type": "object", "required": ["etag"],
                      "properties": {"etag": {"type": "string"}, **RECORD},
                      "additionalProperties": False},
              "DELETE": {"type": "object", "properties": {"etag": {"type": "string"}},
                         "additionalProperties": False}}

    async def get(self, record_id: str) -> None:
        self.reply(public(await self.ctx.accounts.get(parse_id(record_id))))

    async def put(self, record_id: str) -> None:
        assert self.principal is not None
        body = self.body()
        etag = parse_etag(body.pop("etag", None))
        doc = await self.ctx.accounts.update(parse_id(record_id), etag, body, self.principal)
        self.reply(public(doc))

    async def delete(self, record_id: str) -> None:
        assert self.principal is not None
        etag = self.args.get("etag", self.body().get("etag"))
        await self.ctx.accounts.delete(parse_id(record_id), parse_etag(etag), self.principal)
        self.reply(None)
