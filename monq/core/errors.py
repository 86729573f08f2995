"""The error hierarchy: one root, `monq.Error`, and a subclass per kind of failure.

Each class's docstring is its default message. Driver errors are translated into
these at the store; the HTTP status of each kind is decided in exactly one place
(`monq.api.base`), from the `status` attribute below.
"""

from __future__ import annotations


class Error(Exception):
    """monq failed."""

    status = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(Error):
    """The configuration is invalid."""


class StoreError(Error):
    """The database refused the operation."""

    status = 503


class DatabaseUnavailable(StoreError):
    """MongoDB does not answer."""

    status = 503


class StreamHistoryLost(StoreError):
    """A change stream can no longer be resumed from its token."""


class EmbeddedUnavailable(Error):
    """The embedded database cannot be started."""


class ServerUnavailable(Error):
    """The monq server does not answer."""

    status = 503


class BadRequest(Error):
    """The request is invalid."""

    status = 400


class ValidationError(BadRequest):
    """A value is invalid."""

    def __init__(self, message: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLarge(BadRequest):
    """The request body is too large."""

    status = 413


class NotFound(Error):
    """Not found."""

    status = 404


class Conflict(Error):
    """The request conflicts with the current state."""

    status = 409


class TransitionRefused(Conflict):
    """The job is not in a state that allows this."""

    def __init__(self, message: str | None = None, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class StaleEtag(Error):
    """The record changed since it was read: reload it and try again."""

    status = 412


class AuthenticationFailed(Error):
    """Authentication failed."""

    status = 401


class PermissionDenied(Error):
    """Permission denied."""

    status = 403


class TooManyRequests(Error):
    """Too many attempts: try again later."""

    status = 429

    def __init__(self, message: str | None = None, retry_after_s: int = 60) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LeaseLost(Error):
    """This process no longer holds the lease on the job."""

    status = 409
