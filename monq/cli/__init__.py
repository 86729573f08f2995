"""The ``monq`` command: argument parsing, configuration, and one-line errors.

Each sub-command lives in a module of this package with a ``register(sub)``
function that adds its parser and sets ``func``: a callable taking a
`Context` and returning an exit code (a coroutine function is run in a fresh
event loop).

Exit codes: 0 success; 1 an error; 2 bad usage or configuration; 3 MongoDB
unreachable; 4 not found; 5 a refused transition or conflict; 6 a job waited
for did not complete; 130 interrupted.
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
from typing import Any, TextIO

from monq import __version__
from monq.core import errors
from monq.core.config import Config, load_config
from monq.core.logs import configure as configure_logging
from monq.core.services import Service, install_signal_handlers, run_services
from monq.core.store import Store

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


def env_default(name: str, default: Any = None) -> Any:
    """The default of an option from ``MONQ_<NAME>``."""
    return os.environ.get("MONQ_" + name.upper().replace("-", "_"), default)


# Sub-command modules, one a line; each has ``register(sub)``.
COMMAND_MODULES = (
    "monq.cli.up",
    "monq.cli.db",
    "monq.cli.serve",
    "monq.cli.worker",
    "monq.cli.summarizer",
    "monq.cli.jobs",
    "monq.cli.notify",
)


def build_parser() -> Parser:
    parser = Parser(prog="monq", description="monq: a MongoDB-backed job queue.")
    parser.add_argument("--version", action="version", version=f"monq {__version__}")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="configuration file (default: $MONQ_CONFIG, else built-in defaults)")
    parser.add_argument("--debug", action="store_true", default=bool(env_default("debug")),
                        help="show tracebacks of errors ($MONQ_DEBUG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def error_code(exc: errors.Error) -> int:
    if isinstance(exc, errors.ConfigError | errors.BadRequest):
        return EXIT_USAGE
    if isinstance(exc, errors.DatabaseUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, errors.NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, errors.Conflict | errors.StaleEtag):
        return EXIT_CONFLICT
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        config = load_config(args.config)
        configure_logging(config.log.level, config.log.format)
        ctx = Context(args=args, config=config)
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
    except Exception as exc:  # a bug: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(f"monq: internal error: {type(exc).__name__}: {exc} (run with --debug for "
              f"the traceback)", file=sys.stderr)
        return EXIT_ERROR
