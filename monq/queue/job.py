"""`monq.Job`, the base class of job types, their parameter declarations, and
finding a job type by its qualified name.

A job type is a subclass with an ``execute(self, **args)`` method (sync or
async) and class-level defaults that enqueue options override::

    class Report(monq.Job):
        priority = 5
        attempts = 3
        retry_delay_s = 10
        params = {"day": Param(str, required=True, description="ISO date")}

        def execute(self, day):
            self.progress(0.5, "half way")

While a job runs, the worker sets ``self._runtime``; `progress`, `log` and
`heartbeat` go through it (batched, rate-limited), and `defer` raises `Defer`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, Protocol

from bson import ObjectId

from monq.core.errors import BadRequest, ValidationError

UNAUTHORIZED_NAME = "UnauthorizedJob"
# Every process that meets a job type imports it: the newcomer's usual trouble.
IMPORT_HINT = ("the API server, every worker and the CLI must each be able to import "
               "it: install your project where they run, or put its directory on PYTHONPATH")


class UnknownJobType(ValidationError):
    """No such job type (bad input, as for every other way of naming a job wrongly:
    400 in the API, exit 2 in the CLI, from enqueue and schedules alike)."""

    def __init__(self, message: str | None = None, field: str | None = "name") -> None:
        super().__init__(message, field)


class InvalidJobType(BadRequest):
    """The name does not lead to a job type."""


class Defer(Exception):
    """Raised by `Job.defer`: run this job again later."""

    def __init__(self, reason: str, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s


class JobRuntime(Protocol):
    """What a running job talks to; the worker provides it."""

    def progress(self, value: float, message: str | None, data: dict[str, Any]) -> None: ...

    def log(self, level: int, message: str, extra: dict[str, Any]) -> None: ...

    def heartbeat(self) -> None: ...


_TYPE_NAMES: dict[type, str] = {int: "an integer", float: "a number", str: "a string",
                                bool: "true or false", list: "a list", dict: "an object"}
_MISSING = object()


@dataclass(frozen=True)
class Param:
    """One declared argument of a job type."""

    type: type = str
    required: bool = False
    default: Any = None
    description: str = ""
    choices: tuple[Any, ...] = ()

    def check(self, name: str, value: Any) -> Any:
        expected = _TYPE_NAMES.get(self.type, self.type.__name__)
        ok = isinstance(value, self.type) and not (
            self.type in (int, float) and isinstance(value, bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ValidationError(f"argument {name!r}: expected {expected}, got {value!r}",
                                  field=name)
        if self.choices and value not in self.choices:
            raise ValidationError(f"argument {name!r}: must be one of "
                                  f"{', '.join(map(repr, self.choices))}", field=name)
        return value

    def describe(self) -> dict[str, Any]:
        return {"type": self.type.__name__, "required": self.required,
                "default": self.default, "description": self.description,
                "choices": list(self.choices)}


class _JobLog:
    """``self.log`` of a running job: a logger-like front of the runtime."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._fallback = logging.getLogger(f"monq.job.{type(job).__qualname__}")

    def _emit(self, level: int, message: str, args: tuple[Any, ...],
              extra: Mapping[str, Any] | None) -> None:
        text = message % args if args else message
        runtime = self._job._runtime
        if runtime is None:
            self._fallback.log(level, text, extra=dict(extra or {}))
        else:
            runtime.log(level, text, dict(extra or {}))

    def debug(self, message: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        self._emit(logging.DEBUG, message, args, extra)

    def info(self, message: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        self._emit(logging.INFO, message, args, extra)

    def warning(self, message: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        self._emit(logging.WARNING, message, args, extra)

    def error(self, message: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        self._emit(logging.ERROR, message, args, extra)

    def log(self, level: int, message: str, *args: Any,
            extra: Mapping[str, Any] | None = None) -> None:
        self._emit(level, message, args, extra)


class Job:
    """Base class of job types: subclass it and define ``execute(self, **args)``."""

    priority: ClassVar[int] = 0
    attempts: ClassVar[int] = 1
    retry_delay_s: ClassVar[float] = 0.0
    retry_backoff: ClassVar[float] = 2.0
    retry_jitter_s: ClassVar[float] = 0.0
    defer_time_s: ClassVar[float] = 60.0
    defer_max: ClassVar[int | None] = None
    wall_time_s: ClassVar[float | None] = None
    kill_on_wall: ClassVar[bool] = False
    zombie_time_s: ClassVar[float | None] = None
    max_parallel: ClassVar[int | None] = None
    pool: ClassVar[str] = "default"
    tags: ClassVar[tuple[str, ...]] = ()
    unique: ClassVar[bool] = False
    params: ClassVar[dict[str, Param]] = {}
    strict_params: ClassVar[bool] = True
    schedule: ClassVar[str | None] = None
    notifications: ClassVar[list[Any]] = []

    def __init__(self, *, id: ObjectId | None = None, number: int | None = None,
                 args: Mapping[str, Any] | None = None, attempt: int = 1,
                 runtime: JobRuntime | None = None) -> None:
        self.id = id
        self.number = number
        self.args: dict[str, Any] = dict(args or {})
        self.attempt = attempt
        self._runtime = runtime
        self.log = _JobLog(self)

    def execute(self, **args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} defines no execute()")

    # The runtime API --------------------------------------------------------
    def progress(self, value: float, message: str | None = None, **data: Any) -> None:
        """Report progress: `value` from 0 to 1, an optional message and data."""
        value = min(1.0, max(0.0, float(value)))
        if self._runtime is not None:
            self._runtime.progress(value, message, data)

    def heartbeat(self) -> None:
        """Say the job is alive during a long step that reports no progress."""
        if self._runtime is not None:
            self._runtime.heartbeat()

    def defer(self, reason: str, delay_s: float | None = None) -> NoReturn:
        """Stop now and run again later (after `delay_s`, default `defer_time_s`)."""
        raise Defer(reason, delay_s)

    # Class-level helpers ----------------------------------------------------
    @classmethod
    def precheck(cls) -> str | None:
        """Why this worker cannot run jobs of this type (they are given back
        unstarted, release_job), or None when it can."""
        return None

    @classmethod
    def qualname(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    @classmethod
    def validate_args(cls, args: Mapping[str, Any] | None) -> dict[str, Any]:
        """The arguments checked against `params`, with defaults filled in."""
        args = dict(args or {})
        if not cls.params:
            return args
        out: dict[str, Any] = {}
        for name in args:
            if name not in cls.params and cls.strict_params:
                raise ValidationError(f"unknown argument {name!r} for {cls.qualname()}",
                                      field=name)
        for name, param in cls.params.items():
            value = args.get(name, _MISSING)
            if value is _MISSING or value is None:
                if param.required:
                    raise ValidationError(f"missing required argument {name!r}", field=name)
                if param.default is not None:
                    out[name] = param.default
                continue
            out[name] = param.check(name, value)
        out.update({k: v for k, v in args.items() if k not in cls.params})
        return out

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Documentation, defaults and parameters, for clients building forms."""
        return {
            "name": cls.qualname(),
            "doc": inspect.getdoc(cls) or "",
            "params": {name: p.describe() for name, p in cls.params.items()},
            "defaults": {key: getattr(cls, key) for key in (
                "priority", "attempts", "retry_delay_s", "retry_backoff", "defer_time_s",
                "defer_max", "wall_time_s", "zombie_time_s", "max_parallel", "pool",
                "unique", "schedule")} | {"tags": list(cls.tags)},
        }


@dataclass
class _Cache:
    types: dict[str, type[Job]] = field(default_factory=dict)


_cache = _Cache()


def load_job_type(name: str) -> type[Job]:
    """The job type of a qualified name such as ``myproject.jobs.Report``."""
    if not isinstance(name, str) or not name or name.startswith(".") or "." not in name:
        raise InvalidJobType(f"job type {name!r} is not a qualified name "
                             f"(module.Class)")
    cached = _cache.types.get(name)
    if cached is not None:
        return cached
    module_name, _, attr = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UnknownJobType(f"unknown job type {name!r}: no module {module_name!r} "
                                 f"({IMPORT_HINT})") from exc
        raise InvalidJobType(f"job type {name!r}: its module failed to import: "
                             f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise InvalidJobType(f"job type {name!r}: its module failed to import: "
                             f"{type(exc).__name__}: {exc}") from exc
    job_type = getattr(module, attr, None)
    if job_type is None:
        raise UnknownJobType(f"unknown job type {name!r}: {module_name!r} has no {attr!r}")
    if not (isinstance(job_type, type) and issubclass(job_type, Job)) or job_type is Job:
        raise InvalidJobType(f"{name!r} is not a job type (a subclass of monq.Job)")
    _cache.types[name] = job_type
    return job_type
