"""The embedded development database: a SecantusDB server run as a child process.

`monq up` starts one when ``mongodb.embedded`` is ``auto`` (or ``always``), the
URL names this machine and nothing listens there; the test suite starts one on
a free port. SecantusDB comes with the ``embedded`` extra.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pymongo.errors
from pymongo.uri_parser import parse_uri

from monq.core.config import MongoConfig
from monq.core.errors import EmbeddedUnavailable
from monq.core.store import mask_url

log = logging.getLogger("monq.embedded")

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
INSTALL_HINT = "pip install 'monq[embedded]'"


def local_address(url: str) -> tuple[str, int] | None:
    """(host, port) when the URL names exactly one server on this machine."""
    try:
        nodes = parse_uri(url, validate=False)["nodelist"]
    except (pymongo.errors.InvalidURI, ValueError):
        return None
    if len(nodes) != 1 or nodes[0][0] not in LOCAL_HOSTS:
        return None
    return nodes[0][0], int(nodes[0][1])


def is_listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def client_url(url: str) -> str:
    """`url` with ``retryWrites=false`` and ``maxPoolSize=1``, unless it sets them.

    The embedded server is a single node: a retried write has no other server to go
    to, so retryable writes buy nothing there, and SecantusDB keeps every retryable
    write it was sent (10,000 of them, for 30 minutes) and scans them on each write,
    so with them every write slows down as the server ages (an update from 0.6 ms to
    7 ms). monq does not need the driver's retry: its writes are fenced (a job's
    lease token, an event's id) and a worker redoes a write that failed, so one
    redone after a network error still applies once.

    The embedded server runs every command under one interpreter lock, its storage
    engine handing that lock over on each call: commands of several connections at
    once do not run side by side there, they take turns at every step, and each
    costs the server more (measured: an update sent from two connections at once
    0.8 ms of its CPU, from one 0.45 ms; a worker's drain 17 % less server time per
    job on one connection). So each process talks to it over one connection, its
    commands queued in the driver; a change stream, which holds its connection
    while it waits, gets a client of its own (`Store.stream_collection`).
    """
    options = {name.lower() for name in parse_uri(url, validate=False).get("options", {})}
    wanted = [f"{name}={value}" for name, value in (("retryWrites", "false"),
                                                     ("maxPoolSize", "1"))
              if name.lower() not in options]
    if not wanted:
        return url
    base, _, query = url.partition("?")
    if "/" not in base.partition("://")[2]:
        base += "/"
    return f"{base}?" + "&".join([query, *wanted] if query else wanted)


def wanted(config: MongoConfig) -> bool:
    """Whether `monq up` should start the embedded server for this configuration."""
    if config.embedded == "never":
        return False
    address = local_address(config.url)
    if address is None:
        if config.embedded == "always":
            raise EmbeddedUnavailable(
                f"mongodb.embedded is 'always' but {mask_url(config.url)} is not a "
                f"single local address")
        return False
    return not is_listening(*address)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def installed() -> bool:
    return importlib.util.find_spec("secantus") is not None


@contextlib.contextmanager
def server_for(url: str | None) -> Iterator[str]:
    """`url`, or, when it is None, the URL of a throw-away embedded server that runs
    for the block (benchmark and chaos scripts run on either)."""
    with server_process_for(url) as (server, _):
        yield server


@contextlib.contextmanager
def server_process_for(url: str | None) -> Iterator[tuple[str, int | None]]:
    """`server_for`, with the throw-away server's process id (None for `url`): a
    benchmark reads what it costs the server from it."""
    if url:
        yield url, None
        return
    with EmbeddedServer("127.0.0.1", free_port(), ":memory:") as server:
        assert server.process is not None
        yield server.url, server.process.pid


class EmbeddedServer:
    """One SecantusDB child process; `start` waits until it answers."""

    def __init__(self, host: str, port: int, data_path: str | Path,
                 log_path: str | Path | None = None, *, standalone: bool = False) -> None:
        """`standalone`: answer as a standalone server does, without change streams
        (a replica set of one by default)."""
        self.standalone = standalone
        self.host = "127.0.0.1" if host == "localhost" else host.strip("[]")
        self.port = port
        self.data_path = str(data_path)
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return client_url(f"mongodb://{self.host}:{self.port}/")

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        if not installed():
            raise EmbeddedUnavailable(
                f"the embedded database (SecantusDB) is not installed: run {INSTALL_HINT}, "
                f"or point mongodb.url at a running MongoDB")
        if self.data_path != ":memory:":
            Path(self.data_path).mkdir(parents=True, exist_ok=True)
        out: Any = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "secantus", "--host", self.host, "--port",
                 str(self.port), "--storage-path", self.data_path, "--log-level", "WARNING",
                 *(["--standalone"] if self.standalone else [])],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                start_new_session=True)  # Ctrl-C reaches monq, which stops it in order
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        self._wait_ready(timeout_s)
        log.info("embedded database started", extra={"action": "embedded_started",
                                                     "url": self.url, "pid": self.process.pid})

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise EmbeddedUnavailable(
                    f"the embedded database exited with code {self.process.returncode}"
                    + (f"; see {self.log_path}" if self.log_path else ""))
            if is_listening(self.host, self.port, 0.2):
                client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                    self.url, serverSelectionTimeoutMS=1000)
                try:
                    client.admin.command("ping")
                    return
                except pymongo.errors.PyMongoError:
                    pass
                finally:
                    client.close()
            time.sleep(0.1)
        self.stop()
        raise EmbeddedUnavailable(f"the embedded database did not answer within {timeout_s:.0f}s")

    def terminate(self) -> None:
        """Ask the server to stop and do not wait (for a forced exit)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("embedded database did not stop; killing it",
                        extra={"action": "embedded_killed"})
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
