"""The embedded server's URL turns retryable writes off (a single node has nothing to
retry across, and SecantusDB scans every retryable write it recorded on each write),
and keeps whatever else the URL says."""

from __future__ import annotations

import pytest

from monq.core.embedded import client_url
from monq.core.store import database_name, with_database


@pytest.mark.parametrize(("url", "expected"), [
    ("mongodb://127.0.0.1:27017/", "mongodb://127.0.0.1:27017/?retryWrites=false"),
    ("mongodb://127.0.0.1:27017", "mongodb://127.0.0.1:27017/?retryWrites=false"),
    ("mongodb://localhost:27017/monq", "mongodb://localhost:27017/monq?retryWrites=false"),
    ("mongodb://localhost:27017/monq?appname=x",
     "mongodb://localhost:27017/monq?appname=x&retryWrites=false"),
    # the user's own choice stands
    ("mongodb://localhost:27017/monq?retryWrites=true",
     "mongodb://localhost:27017/monq?retryWrites=true"),
    ("mongodb://localhost:27017/?retrywrites=false", "mongodb://localhost:27017/?retrywrites=false"),
])
def test_client_url(url: str, expected: str) -> None:
    assert client_url(url) == expected


def test_the_option_survives_naming_a_database() -> None:
    url = with_database(client_url("mongodb://127.0.0.1:27017/"), "jobs")
    assert url == "mongodb://127.0.0.1:27017/jobs?retryWrites=false"
    assert database_name(url) == "jobs"


def test_clients_of_the_embedded_server_send_no_retryable_writes(mongo_server_url: str) -> None:
    import pymongo

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(mongo_server_url)
    try:
        assert client.options.retry_writes is False
    finally:
        client.close()
