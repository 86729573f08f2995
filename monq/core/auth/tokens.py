"""Login tokens: JWTs signed with HS256, with a required expiry, naming the account
by its immutable id (``sub``) and its token version (``ver``: bumped by logout, a
password change, deactivation or a rename, which revokes every token issued
before). A deleted account's tokens name an id that no account has again."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from monq.core.config import Config
from monq.core.errors import AuthenticationFailed, ConfigError

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
SECRET_FILE = "secret"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True)
class Claims:
    account_id: str
    version: int
    expires_at: float


def load_secret(config: Config) -> str:
    """The signing secret: configured, or generated once into var/secret (mode 0600)."""
    if config.api.secret:
        if len(config.api.secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"{config.source}: api.secret: must be at least "
                              f"{MIN_SECRET_BYTES} bytes")
        return config.api.secret
    path = Path(config.var_path, SECRET_FILE)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(48))
    return path.read_text().strip()


class Tokens:
    def __init__(self, secret: str, expiry_s: int) -> None:
        self.secret = secret
        self.expiry_s = expiry_s

    def issue(self, account_id: str, version: int, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return jwt.encode({"sub": account_id, "ver": version, "iat": int(now),
                           "exp": int(now + self.expiry_s)}, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Claims:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.secret, algorithms=[ALGORITHM],
                options={"require": ["exp", "sub", "ver"]})
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed("invalid or expired token") from exc
        if not isinstance(claims["sub"], str) or not isinstance(claims["ver"], int):
            raise AuthenticationFailed("invalid or expired token")
        return Claims(claims["sub"], claims["ver"], float(claims["exp"]))
