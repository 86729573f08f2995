import time

import pytest

from monq.core.embedded import free_port
from monq.core.errors import DatabaseUnavailable
from monq.core.store import Store, database_name, layout, mask_url
from tests.helpers import run_cli


def test_mask_url_hides_credentials() -> None:
    assert mask_url("mongodb://bob:s3cret@db:27017/monq") == "mongodb://***@db:27017/monq"
    assert mask_url("mongodb://db/monq") == "mongodb://db/monq"


def test_database_name_defaults_to_monq() -> None:
    assert database_name("mongodb://h:1/") == "monq"
    assert database_name("mongodb://h:1/jobs?retryWrites=true") == "jobs"


async def test_indexes_are_created_idempotently(store: Store) -> None:
    await store.ensure_indexes()
    await store.ensure_indexes()
    for index in layout.INDEXES:
        info = await store.collection(index.collection).index_information()
        assert index.name in info
        assert info[index.name]["key"] == list(index.keys)


async def test_retired_indexes_are_dropped(store: Store) -> None:
    for i, (collection, name) in enumerate(layout.RETIRED_INDEXES):
        await store.collection(collection).create_index(f"retired_{i}", name=name)
    await store.ensure_indexes()
    for collection, name in layout.RETIRED_INDEXES:
        assert name not in await store.collection(collection).index_information()


async def test_unreachable_server_fails_fast_with_masked_url() -> None:
    url = f"mongodb://user:pw@127.0.0.1:{free_port()}/monq"
    store = Store(url, timeout_s=1)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as info:
        await store.ping()
    assert time.monotonic() - started < 5
    assert "pw" not in str(info.value)
    assert "mongodb://***@127.0.0.1" in str(info.value)
    await store.close()


def test_cli_unreachable_database_is_one_line(monq_env: dict[str, str]) -> None:
    monq_env["MONQ_MONGODB_URL"] = f"mongodb://u:topsecret@127.0.0.1:{free_port()}/monq"
    monq_env["MONQ_MONGODB_CONNECT_TIMEOUT_S"] = "1"
    started = time.monotonic()
    # in this process: the bound is on the connect timeout, not on interpreter start-up
    result = run_cli("db", "init", env=monq_env)
    assert time.monotonic() - started < 10
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1
    assert "does not answer" in result.stderr
    assert "topsecret" not in result.stderr


def test_cli_db_init_creates_indexes(monq_env: dict[str, str]) -> None:
    result = run_cli("db", "init", env=monq_env)
    assert result.returncode == 0, result.stderr
    assert "indexes ready" in result.stdout
