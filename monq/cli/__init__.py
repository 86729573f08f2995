"""The ``monq`` command: argument parsing, configuration, and one-line errors.

Each sub-command lives in a module of this package with a ``register(sub)``
function that adds its parser and sets ``func``: a callable taking a
`Context` and returning an exit code (a coroutine function is run in a fresh
event loop).

Every option also takes its default from the environment: ``MONQ_<COMMAND>_<OPTION>``
(``MONQ_JOBS_LIMIT``, ``MONQ_USERS_CREATE_EMAIL``), and the options every command
shares from ``MONQ_JSON``, ``MONQ_SERVER``, ``MONQ_TOKEN`` and ``MONQ_DEBUG``
(`apply_environment`). Commands whose name is a configuration section (``worker``)
take theirs from the configuration instead.

Commands that read or change the queue ask a `monq.cli.backend.Backend`
(`Context.backend`): MongoDB directly by default, or a monq server over HTTP with
``--server URL`` (`monq.cli.remote`).

Exit codes: 0 success; 1 an error (also refused login or permission); 2 bad usage
or configuration; 3 MongoDB or the server unreachable; 4 not found; 5 a refused
transition or conflict; 6 a job waited for did not complete; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from monq import __version__
from monq.core import errors
from monq.core.config import Config, load_config
from monq.core.logs import configure as configure_logging
from monq.core.services import Service, install_signal_handlers, run_services
from monq.core.store import Store

if TYPE_CHECKING:
    from monq.cli.backend import Backend

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_JOB_FAILED = 6
EXIT_INTERRUPTED = 130


@dataclass
class Context:
    """What a command gets: its parsed arguments and the configuration."""

    args: argparse.Namespace
    config: Config
    out: TextIO = sys.stdout

    @asynccontextmanager
    async def store(self) -> AsyncIterator[Store]:
        """A store for a one-shot command: fails fast when MongoDB does not answer."""
        store = Store(self.config.mongodb.url, timeout_s=self.config.mongodb.connect_timeout_s,
                      app_name="monq-cli")
        try:
            await store.ping()
            yield store
        finally:
            await store.close()

    @asynccontextmanager
    async def backend(self) -> AsyncIterator[Backend]:
        """The queue's operations: over HTTP with ``--server``, else MongoDB directly."""
        server = getattr(self.args, "server", None)
        if server:
            from monq.cli.remote import RemoteBackend

            remote = RemoteBackend(server, getattr(self.args, "token", None))
            try:
                yield remote
            finally:
                remote.close()
            return
        from monq.cli.backend import DirectBackend

        async with self.store() as store:
            yield DirectBackend(store, self.config)


async def run_daemon(ctx: Context, app_name: str,
                     build: Callable[[Store], Sequence[Service]]) -> int:
    """Run the services `build` makes until SIGINT or SIGTERM. MongoDB may be down at
    start: the services wait for it; the indexes are made when it answers at once."""
    stop = asyncio.Event()
    install_signal_handlers(stop)
    store = Store(ctx.config.mongodb.url, timeout_s=ctx.config.mongodb.connect_timeout_s,
                  app_name=app_name)
    try:
        with contextlib.suppress(errors.DatabaseUnavailable):
            await store.ensure_indexes()
        await run_services(build(store), stop)
    finally:
        await store.close()
    return EXIT_OK


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, as for every other error
        self.exit(EXIT_USAGE, f"monq: error: {message} (see: {self.prog} --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        # the innermost sub-command parser finishes first: remember it, so that an
        # unrecognised argument points at that command's help, not monq's
        if not hasattr(parsed, "_parser"):
            parsed._parser = self
        return parsed, extras


def parse_arguments(parser: Parser, argv: Sequence[str] | None) -> argparse.Namespace:
    args, extras = parser.parse_known_args(argv)
    command_parser = vars(args).pop("_parser", parser)
    if extras:
        command_parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def env_default(name: str, default: Any = None) -> Any:
    """The default of an option from ``MONQ_<NAME>``."""
    return os.environ.get(env_name(name), default)


def env_name(*parts: str) -> str:
    return "MONQ_" + "_".join(parts).upper().replace("-", "_")


# Options every command shares: their variable is MONQ_<DEST> whatever the command.
SHARED_OPTIONS = frozenset({"json", "server", "token", "debug", "config"})
TRUE_WORDS = ("1", "true", "yes", "on")


def add_remote_options(parser: argparse.ArgumentParser) -> None:
    """``--server`` and ``--token`` after the command too (before it works everywhere)."""
    parser.add_argument("--server", default=argparse.SUPPRESS, metavar="URL",
                        help="talk to this monq server over HTTP instead of MongoDB")
    parser.add_argument("--token", default=argparse.SUPPRESS,
                        help="the API token for --server (else the one `monq login` stored)")


def add_action(actions: Any, name: str, text: str, func: Callable[..., Any], *,
               id_help: str | None = None, **defaults: Any) -> argparse.ArgumentParser:
    """A sub-command ``name`` of a command's actions, with ``--json``, and with an ``ID``
    argument when `id_help` says what it is."""
    parser: argparse.ArgumentParser = actions.add_parser(name, help=text)
    if id_help is not None:
        parser.add_argument("id", metavar="ID", help=id_help)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=func, **defaults)
    return parser


def _env_default(parser: argparse.ArgumentParser, action: argparse.Action, var: str) -> None:
    raw = os.environ.get(var)
    if raw is not None and action.default is not argparse.SUPPRESS:
        action.required = False  # the environment gives it
        if isinstance(action, argparse._StoreTrueAction):
            action.default = raw.strip().lower() in TRUE_WORDS
        elif isinstance(action, argparse._AppendAction):
            action.default = [v.strip() for v in raw.split(",") if v.strip()]
            bad = [v for v in action.default if action.choices and v not in action.choices]
            if bad:
                parser.error(f"{var}: invalid choice {bad[0]!r}")
        else:
            if action.choices and raw not in action.choices:
                parser.error(f"{var}: invalid choice {raw!r}")
            action.default = raw  # a string: argparse converts it with the option's type
    if action.help != argparse.SUPPRESS:
        action.help = f"{action.help or ''} [${var}]".strip()


def apply_environment(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> None:
    """Give every option of `parser` and its sub-commands its MONQ_ environment default."""
    sections = set(Config.__dataclass_fields__)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if name not in sections:
                    apply_environment(child, (*path, name))
        elif action.option_strings and action.dest not in ("help", "version"):
            shared = action.dest in SHARED_OPTIONS
            _env_default(parser, action, env_name(action.dest) if shared
                         else env_name(*path, action.dest))


# Sub-command modules, one a line; each has ``register(sub)``.
COMMAND_MODULES = (
    "monq.cli.up",
    "monq.cli.db",
    "monq.cli.serve",
    "monq.cli.worker",
    "monq.cli.summarizer",
    "monq.cli.jobs",
    "monq.cli.history",
    "monq.cli.events",
    "monq.cli.workers",
    "monq.cli.accounts",
    "monq.cli.login",
    "monq.cli.schedules",
    "monq.cli.notify",
)


def build_parser() -> Parser:
    parser = Parser(prog="monq", description="monq: a MongoDB-backed job queue.")
    parser.add_argument("--version", action="version", version=f"monq {__version__}")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="configuration file (default: built-in defaults)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--server", metavar="URL",
                        help="talk to this monq server over HTTP instead of MongoDB")
    parser.add_argument("--token", help="the API token for --server (else the one "
                        "`monq login` stored)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    apply_environment(parser)
    return parser


def error_code(exc: errors.Error) -> int:
    if isinstance(exc, errors.ConfigError | errors.BadRequest):
        return EXIT_USAGE
    if isinstance(exc, errors.DatabaseUnavailable | errors.ServerUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, errors.NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, errors.Conflict | errors.StaleEtag):
        return EXIT_CONFLICT
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_arguments(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        config = load_config(args.config)
        configure_logging(config.log.level, config.log.format)
        # sys.stdout as it is now, not as it was at import (the field's default): a
        # caller that redirects output, like the in-process CLI tests, gets it
        ctx = Context(args=args, config=config, out=sys.stdout)
        result = args.func(ctx)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except errors.Error as exc:
        if args.debug:
            traceback.print_exc()
        print(f"monq: error: {exc}", file=sys.stderr)
        return error_code(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `monq jobs | head`: the reader has what it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a bug: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(f"monq: internal error: {type(exc).__name__}: {exc} (run with --debug for "
              f"the traceback)", file=sys.stderr)
        return EXIT_ERROR
