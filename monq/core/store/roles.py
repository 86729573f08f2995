"""Queries on sys.role (users and roles) and the login throttle in sys.counter.

A sys.role document: ``{_id, kind: "user"|"role", name (unique per kind), realname, email,
password (argon2id hash, users only), role: [role names], perm: [permissions],
is_active, language, etag, token_version, created, updated}``. Every change
sets a new ``etag``; writes that name an etag change the record only if it
still has it.

Login throttle: ``{_id: "login:<user or address>", n, until}`` in sys.counter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from monq.core.store import Store, layout


class RoleStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.roles = store.collection(layout.ROLE)
        self.counters = store.collection(layout.COUNTER)

    async def insert(self, doc: dict[str, Any]) -> None:
        async with self.store.errors():
            await self.roles.insert_one(doc)

    async def by_id(self, record_id: ObjectId) -> dict[str, Any] | None:
        async with self.store.errors():
            return await self.roles.find_one({"_id": record_id})

    async def by_name(self, name: str, kind: str = "user") -> dict[str, Any] | None:
        async with self.store.errors():
            return await self.roles.find_one({"kind": kind, "name": name})

    async def token_versions(self, names: Sequence[str]) -> dict[str, int]:
        """The token version of each active user of `names` (missing: gone or inactive),
        in one query on the kind_name index."""
        async with self.store.errors():
            docs = await self.roles.find(
                {"kind": "user", "name": {"$in": list(names)}, "is_active": {"$ne": False}},
                {"name": 1, "token_version": 1}).to_list(None)
        return {d["name"]: int(d.get("token_version", 0)) for d in docs}

    async def roles_named(self, names: Sequence[str]) -> list[dict[str, Any]]:
        async with self.store.errors():
            return await self.roles.find({"kind": "role", "name": {"$in": list(names)}}
                                         ).to_list(None)

    async def page(self, *, name: str | None = None, role: str | None = None, skip: int = 0,
                   limit: int = 25) -> tuple[list[dict[str, Any]], int]:
        query: dict[str, Any] = {}
        if name:
            query["name"] = {"$regex": re.escape(name), "$options": "i"}
        if role:
            query["role"] = role
        async with self.store.errors():
            total = await self.roles.count_documents(query)
            docs = await self.roles.find(query).sort("name", 1).skip(skip).limit(limit
                                                                               ).to_list(None)
        return docs, total

    async def update(self, record_id: ObjectId, etag: ObjectId | None,
                     fields: dict[str, Any], *, bump_version: bool = False
                     ) -> dict[str, Any] | None:
        """Change a record if it still has `etag` (any etag when None); None otherwise."""
        query: dict[str, Any] = {"_id": record_id}
        if etag is not None:
            query["etag"] = etag
        update: dict[str, Any] = {"$set": {**fields, "etag": ObjectId()}}
        if bump_version:
            update["$inc"] = {"token_version": 1}
        async with self.store.errors():
            return await self.roles.find_one_and_update(query, update,
                                                        return_document=ReturnDocument.AFTER)

    async def delete(self, record_id: ObjectId, etag: ObjectId) -> bool:
        async with self.store.errors():
            result = await self.roles.delete_one({"_id": record_id, "etag": etag})
        return result.deleted_count == 1

    async def users_with_role(self, name: str) -> int:
        """How many users and roles include the role `name`."""
        async with self.store.errors():
            return await self.roles.count_documents({"role": name})

    # Login throttle -------------------------------------------------------------
    async def failures(self, keys: Sequence[str], now: datetime) -> datetime | None:
        """The latest time until which one of `keys` is locked out, if any."""
        async with self.store.errors():
            docs = await self.counters.find({"_id": {"$in": [f"login:{k}" for k in keys]},
                                             "until": {"$gt": now}}).to_list(None)
        return max((d["until"] for d in docs), default=None)

    async def record_failure(self, keys: Sequence[str], now: datetime, max_failures: int,
                             lockout_s: int) -> None:
        async with self.store.errors():
            for key in keys:
                doc = await self.counters.find_one_and_update(
                    {"_id": f"login:{key}"}, {"$inc": {"n": 1}, "$set": {"at": now}},
                    upsert=True, return_document=ReturnDocument.AFTER)
                if doc is not None and doc["n"] >= max_failures:
                    await self.counters.update_one(
                        {"_id": f"login:{key}"},
                        {"$set": {"n": 0, "until": now + timedelta(seconds=lockout_s)}})

    async def clear_failures(self, keys: Sequence[str]) -> None:
        async with self.store.errors():
            await self.counters.delete_many({"_id": {"$in": [f"login:{k}" for k in keys]}})
