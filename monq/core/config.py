"""Configuration: read once at start-up into a typed, read-only object.

Sources, later ones winning: the built-in defaults below (documented in
etc/monq.toml), the TOML file named by ``--config`` or ``MONQ_CONFIG``, and
``MONQ_<SECTION>_<KEY>`` environment variables. Every value is checked against
its declared type; an unknown key, a wrong type or an unreadable file raises
`ConfigError` with one line naming the key and the source. The resulting
`Config` is passed down explicitly; nothing reads it from a global.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from monq.core.errors import ConfigError

log = logging.getLogger("monq.config")

ENV_PREFIX = "MONQ_"
# Keys earlier versions had, with why they went: still accepted, with a warning.
RETIRED_KEYS: dict[str, str] = {
    "queue.relay_interval_s": "outboxes left by crashed processes are relayed by the "
                              "sweep, every queue.sweep_interval_s",
}
CONFIG_ENV = "MONQ_CONFIG"


@dataclass(frozen=True)
class MongoConfig:
    url: str = "mongodb://127.0.0.1:27017/monq"
    embedded: Literal["auto", "always", "never"] = "auto"
    connect_timeout_s: float = 3.0


@dataclass(frozen=True)
class PathsConfig:
    var: str = "var"


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 5001
    admin_username: str = "admin"
    admin_password: str = ""
    secret: str = ""
    token_expiry_s: int = 28800
    token_refresh_s: int = 3600
    origins: list[str] = field(default_factory=list)
    login_max_failures: int = 5
    login_lockout_s: int = 60
    public_url: str = ""
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0
    ws_max_message_bytes: int = 65536
    ws_send_queue: int = 1000
    ws_max_interests: int = 100
    chat_channels: list[str] = field(default_factory=lambda: ["message"])
    event_source: Literal["auto", "change_stream", "poll"] = "auto"
    event_poll_s: float = 0.2
    event_window_s: float = 0.0  # deprecated: queue.relay_bound_s (the larger counts)
    metrics_token: str = ""
    database_timeout_s: float = 1.5
    max_body_bytes: int = 1_048_576
    count_limit: int = 10_000
    # argon2id's cost: passes, memory in KiB, threads (argon2-cffi's recommended values)
    password_time_cost: int = 3
    password_memory_kib: int = 65536
    password_parallelism: int = 4

    def __post_init__(self) -> None:
        if self.count_limit < 1:
            raise ConfigError(f"api.count_limit: expected 1 or more, got {self.count_limit!r}")
        if self.password_time_cost < 1 or self.password_parallelism < 1:
            raise ConfigError("api.password_time_cost and api.password_parallelism: "
                              "expected 1 or more")
        if self.password_memory_kib < 8 * self.password_parallelism:
            raise ConfigError(f"api.password_memory_kib: expected at least 8 KiB per "
                              f"thread ({8 * self.password_parallelism}), got "
                              f"{self.password_memory_kib}")


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 4
    pool: str = "default"
    tags: list[str] = field(default_factory=list)
    heartbeat_s: float = 2.0
    poll_min_s: float = 0.05
    poll_max_s: float = 1.0
    shutdown_grace_s: float = 30.0
    kill_grace_s: float = 0.5
    dead_after_s: float = 15.0


@dataclass(frozen=True)
class QueueConfig:
    zombie_time_s: float = 30.0
    sweep_interval_s: float = 2.0
    max_recoveries: int = 3
    relay_bound_s: float = 10.0
    # globs of the job types clients (API, dashboard, schedules) may name
    job_types: list[str] = field(default_factory=lambda: ["*"])

    def __post_init__(self) -> None:
        for pattern in self.job_types:
            if not pattern or any(not (c.isascii() and (c.isalnum() or c in "_.*?"))
                                  for c in pattern):
                raise ConfigError(f"queue.job_types: {pattern!r} is not a glob of "
                                  f"qualified names (letters, digits, _ . * ?)")


@dataclass(frozen=True)
class SummarizerConfig:
    interval_s: float = 1.0
    lease_s: float = 5.0
    second_retention_days: int = 7
    minute_retention_days: int = 90
    hour_retention_days: int = 730


@dataclass(frozen=True)
class RetentionConfig:
    """Days to keep finished jobs, events and job log lines; 0 keeps them forever."""

    journal_days: int = 90
    event_days: int = 30
    log_days: int = 30

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"retention.{f.name}: expected 0 (keep forever) or more "
                                  f"days, got {getattr(self, f.name)!r}")


@dataclass(frozen=True)
class SchedulerConfig:
    interval_s: float = 1.0
    catchup_cap: int = 100
    grace_s: float = 60.0
    stale_s: float = 60.0
    job_modules: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NotifierConfig:
    interval_s: float = 1.0
    max_attempts: int = 8
    backoff_s: float = 2.0
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_ca_file: str = ""
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "monq@localhost"
    webhook_secret: str = ""
    webhook_timeout_s: float = 10.0
    webhook_hosts: list[str] = field(default_factory=list)
    webhook_allow_private: bool = False
    smtp_timeout_s: float = 10.0
    lease_s: float = 60.0
    concurrency: int = 1
    retention_days: int = 7


@dataclass(frozen=True)
class LogConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class Config:
    mongodb: MongoConfig = field(default_factory=MongoConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    summarizer: SummarizerConfig = field(default_factory=SummarizerConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    notifier: NotifierConfig = field(default_factory=NotifierConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: str = "defaults"

    @property
    def relay_bound_s(self) -> float:
        """How late an event may appear in sys.event, by its id's time (see
        `monq.core.store.events.EventReader`); the deprecated ``api.event_window_s``
        counts when it is the larger."""
        return max(self.queue.relay_bound_s, self.api.event_window_s)

    @property
    def var_path(self) -> Path:
        return Path(self.paths.var)

    def with_values(self, **sections: Mapping[str, Any]) -> Config:
        """A copy with some keys changed, checked like a file: ``with_values(api={"port": 0})``."""
        raw = {name: dict(values) for name, values in sections.items()}
        return _build(raw, {}, self, "override")


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Read the configuration from `path` (or ``$MONQ_CONFIG``) and the environment."""
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_ENV):
        path = env[CONFIG_ENV]
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the configuration file: "
                              f"{exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    return _build(raw, env, Config(source=source), source)


def _sections() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "source"}


def _drop_retired(changes: dict[str, dict[str, tuple[Any, str]]]) -> None:
    """Leave out keys earlier versions read and this one does not: a configuration
    written for them still loads, with a warning."""
    for name, values in changes.items():
        for key in [k for k in values if f"{name}.{k}" in RETIRED_KEYS]:
            log.warning("%s: %s.%s is no longer read (%s); remove it", values[key][1], name,
                        key, RETIRED_KEYS[f"{name}.{key}"],
                        extra={"action": "config_key_retired"})
            del values[key]


def _build(raw: Mapping[str, Any], env: Mapping[str, str], base: Config, source: str) -> Config:
    sections = _sections()
    changes: dict[str, Any] = {}
    for name, values in raw.items():
        if name not in sections:
            raise ConfigError(f"{source}: unknown section [{name}]")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: {name}: expected a table of keys")
        changes[name] = {key: (value, source) for key, value in values.items()}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        section, _, key = var[len(ENV_PREFIX):].lower().partition("_")
        if section not in sections or not key:
            continue  # other MONQ_ variables belong to the CLI or the tests
        changes.setdefault(section, {})[key] = (value, f"environment {var}")
    _drop_retired(changes)
    built = {}
    for name, cls in sections.items():
        current = getattr(base, name)
        if name not in changes:
            built[name] = current
            continue
        hints = get_type_hints(cls)
        updates = {}
        for key, (value, origin) in changes[name].items():
            if key not in hints:
                raise ConfigError(f"{origin}: unknown key {name}.{key}")
            updates[key] = _coerce(value, hints[key], f"{name}.{key}", origin)
        try:
            built[name] = dataclasses.replace(current, **updates)
        except ConfigError as exc:  # a range check of the section's __post_init__
            origins = ", ".join(sorted({origin for _, origin in changes[name].values()}))
            raise ConfigError(f"{origins}: {exc}") from None
    return Config(**built, source=base.source if source == "override" else source)


_WRONG = object()  # what a converter returns for a value it cannot take
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _as_bool(value: Any, from_env: bool) -> Any:
    if from_env and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
    return value if isinstance(value, bool) else _WRONG


def _as_number(kind: type) -> Callable[[Any, bool], Any]:
    """int or float: from the environment parsed, from a file as written (never a bool,
    and an int where a float is wanted is widened)."""
    def convert(value: Any, from_env: bool) -> Any:
        if from_env and isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                return _WRONG
        if isinstance(value, bool) or not isinstance(value, int if kind is int else
                                                     int | float):
            return _WRONG
        return kind(value)
    return convert


def _as_str(value: Any, from_env: bool) -> Any:
    return value if isinstance(value, str) else _WRONG


def _as_list(value: Any, from_env: bool) -> Any:
    if from_env and isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    return _WRONG


# The converter and the words of its error, per declared type.
_CONVERTERS: dict[Any, tuple[Callable[[Any, bool], Any], str]] = {
    bool: (_as_bool, "true or false"), int: (_as_number(int), "an integer"),
    float: (_as_number(float), "a number"), str: (_as_str, "a string"),
    list: (_as_list, "a list of strings"),
}


def _coerce(value: Any, kind: Any, key: str, origin: str) -> Any:
    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{origin}: {key}: expected {expected}, got {value!r}")

    if get_origin(kind) is Literal:
        choices = get_args(kind)
        if value not in choices:
            raise fail("one of " + ", ".join(repr(c) for c in choices))
        return value
    if get_origin(kind) in (list, typing.List) or isinstance(kind, types.GenericAlias):  # noqa: UP006
        kind = list
    if kind not in _CONVERTERS:  # pragma: no cover - every declared type has one
        raise fail(str(kind))
    convert, expected = _CONVERTERS[kind]
    converted = convert(value, origin.startswith("environment"))
    if converted is _WRONG:
        raise fail(expected)
    return converted
