import dataclasses
from pathlib import Path

import pytest

from monq.core.config import Config, load_config
from monq.core.errors import ConfigError
from tests.conftest import ROOT
from tests.helpers import run_cli


def test_etc_monq_toml_documents_exactly_the_defaults() -> None:
    from_file = load_config(ROOT / "etc" / "monq.toml", env={})
    assert dataclasses.replace(from_file, source="") == dataclasses.replace(Config(), source="")


def test_every_key_is_documented_in_etc_monq_toml() -> None:
    text = (ROOT / "etc" / "monq.toml").read_text()
    for section in dataclasses.fields(Config):
        if section.name == "source":
            continue
        assert f"[{section.name}]" in text
        for key in dataclasses.fields(getattr(Config(), section.name)):
            assert f"\n{key.name} = " in text, f"{section.name}.{key.name} is not documented"


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "monq.toml"
    path.write_text('[api]\nport = 7000\nhost = "10.1.2.3"\n')
    config = load_config(path, env={"MONQ_API_PORT": "7001", "MONQ_WORKER_TAGS": "gpu, big"})
    assert config.api.port == 7001
    assert config.api.host == "10.1.2.3"
    assert config.worker.tags == ["gpu", "big"]
    assert config.source == str(path)


def test_monq_config_variable_selects_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text("[worker]\nconcurrency = 9\n")
    assert load_config(None, env={"MONQ_CONFIG": str(path)}).worker.concurrency == 9


def test_config_is_read_only() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.api.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(("text", "message"), [
    ("[api]\nport = \"x\"\n", "api.port: expected an integer, got 'x'"),
    ("[api]\nprot = 1\n", "unknown key api.prot"),
    ("[nope]\na = 1\n", "unknown section [nope]"),
    ("[mongodb]\nembedded = \"sometimes\"\n", "mongodb.embedded: expected one of"),
    ("[worker]\ntags = [1]\n", "worker.tags: expected a list of strings"),
    ("[api\n", "not valid TOML"),
])
def test_bad_file_names_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^environment MONQ_WORKER_CONCURRENCY: "
                                          r"worker.concurrency: expected an integer"):
        load_config(None, env={"MONQ_WORKER_CONCURRENCY": "many"})


def test_other_monq_variables_are_not_configuration() -> None:
    config = load_config(None, env={"MONQ_TEST_MONGODB_URL": "x", "MONQ_DEBUG": "1"})
    assert config == Config()


@pytest.mark.parametrize("content", [None, "[api]\nport = true\n"])
def test_cli_config_error_is_one_line(tmp_path: Path, monq_env: dict[str, str],
                                      content: str | None) -> None:
    path = tmp_path / "monq.toml"
    if content is not None:
        path.write_text(content)
    result = run_cli("--config", str(path), "db", "init", env=monq_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert "Traceback" not in result.stderr


def test_a_retired_key_still_loads_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A configuration written for an earlier version that read queue.relay_interval_s
    still loads; the key is named in a warning so that it can be removed."""
    path = tmp_path / "monq.toml"
    path.write_text("[queue]\nrelay_interval_s = 1.0\nmax_recoveries = 5\n")
    with caplog.at_level("WARNING", logger="monq.config"):
        config = load_config(path, env={"MONQ_QUEUE_RELAY_INTERVAL_S": "2"})
    assert config.queue.max_recoveries == 5
    # one warning, naming where the value that wins comes from
    assert [r.action for r in caplog.records] == ["config_key_retired"]  # type: ignore[attr-defined]
    assert "MONQ_QUEUE_RELAY_INTERVAL_S" in caplog.records[0].getMessage()
    assert not hasattr(config.queue, "relay_interval_s")
