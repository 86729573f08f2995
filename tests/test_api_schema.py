"""schemathesis against /api/v1/openapi.json of a real `monq serve`, logged in as the
admin: for every operation, generated requests get no 5xx and replies that match the
schema."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from monq.core.embedded import free_port
from tests.api_fixtures import ADMIN_PASSWORD
from tests.helpers import spawn_monq, wait_for_line

EXAMPLES_PER_OPERATION = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture
def served(monq_env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    env = {**monq_env, "MONQ_API_PORT": str(port), "MONQ_API_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "MONQ_API_LOGIN_MAX_FAILURES": "1000000"}
    with spawn_monq("serve", env=env) as process:
        wait_for_line(process, "API at")
        yield f"http://127.0.0.1:{port}"


def admin_token(base: str) -> str:
    request = urllib.request.Request(
        base + "/api/v1/login", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"username": "admin", "password": ADMIN_PASSWORD}).encode())
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(json.load(reply)["data"]["token"])


@pytest.mark.slow
@pytest.mark.timeout(900)  # hundreds of requests: 300 s ran out on a loaded machine
def test_no_server_errors_and_replies_match_the_schema(served: str) -> None:
    schema = schemathesis.openapi.from_url(served + "/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {admin_token(served)}"}
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/v1/logout":
            continue  # it would revoke the token the other operations use

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            # positive_data_acceptance is left out: valid JSON can still name a role
            # that does not exist, which is rightly a 400
            case.call_and_validate(base_url=served, headers=headers, checks=CHECKS)

        check()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) >= 9, tested
