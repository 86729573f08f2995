"""log.format = "json": a real `monq serve` writes one JSON object per line on stderr,
with the stable ``action`` of each line and no query string (tokens) in access lines."""

from __future__ import annotations

import json
import signal
import urllib.request

import pytest

from monq.core.embedded import free_port
from tests.helpers import daemon_log, spawn_monq, wait_for_line


@pytest.mark.slow
def test_json_logs_are_one_object_a_line_with_actions(monq_env: dict[str, str]) -> None:
    port = free_port()
    env = {**monq_env, "MONQ_LOG_FORMAT": "json", "MONQ_API_PORT": str(port),
           "MONQ_API_ADMIN_PASSWORD": "admin-secret-password"}
    with spawn_monq("serve", env=env) as process:
        wait_for_line(process, "API at")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health?token=s3cr3t",
                                    timeout=10) as reply:
            assert reply.status == 200
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        stderr = daemon_log(process)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines, stderr
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    actions = {line.get("action") for line in lines}
    assert {"api_started", "access", "stopping"} <= actions
    access = next(line for line in lines if line.get("action") == "access")
    assert access["message"].startswith("GET /api/v1/health 200")
    assert "s3cr3t" not in stderr
