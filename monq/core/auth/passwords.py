"""Password hashing with argon2id (argon2-cffi); hashes are rehashed at login when
the parameters change. Hashing costs tens of milliseconds of CPU by design: servers
call the ``_async`` forms, which run it in a thread (argon2 releases the GIL) so
that logins never stall the event loop.

The parameters are ``api.password_time_cost``, ``api.password_memory_kib`` and
``api.password_parallelism`` (defaults: argon2-cffi's recommended ones, RFC 9106's
low-memory choice), so a deployment can tune the cost to its hardware."""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from monq.core.config import ApiConfig

MIN_LENGTH = 8


class Passwords:
    """Hashes and checks passwords with one set of argon2id parameters."""

    def __init__(self, api: ApiConfig) -> None:
        self._parameters = (api.password_time_cost, api.password_memory_kib,
                            api.password_parallelism)

    def hash(self, password: str) -> str:
        return _hasher(*self._parameters)[0].hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches; an unknown user (`stored` None) costs the same time
        (a dummy hash made with the same parameters is checked instead)."""
        hasher, dummy = _hasher(*self._parameters)
        try:
            return hasher.verify(stored or dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        time_cost, memory_kib, parallelism = self._parameters  # no hash made here
        return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                              parallelism=parallelism).check_needs_rehash(stored)

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify, stored, password)


@functools.lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> tuple[PasswordHasher, str]:
    """The hasher for these parameters and its dummy hash, made once per process, in the
    thread of the first hash or check (the dummy costs one hash: never on the event loop)."""
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                            parallelism=parallelism)
    return hasher, hasher.hash("monq-dummy-password")
