"""The documentation agrees with the code: every configuration key, index and metric is
documented, README links the docs, and every figure in docs/benchmarks.rst and
docs/reliability.rst sits under the command that reproduces it, with its date and
server."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest

from monq.api.instruments import Instruments
from monq.core.config import Config
from monq.core.store import layout
from monq.core.store.metrics import StoreReadings
from tests.conftest import ROOT

DOCS = ROOT / "docs"
FIGURE_DOCS = ("benchmarks.rst", "reliability.rst")
BLOCK = re.compile(r"\.\. code-block:: console\n\n((?:    .*\n|\n)+)")
OPTION = re.compile(r"(--[a-z][a-z-]*)")


def test_every_configuration_key_is_in_the_reference() -> None:
    text = (DOCS / "configuration.rst").read_text()
    defaults = Config()
    keys = {f"{section.name}.{key.name}"
            for section in dataclasses.fields(Config) if section.name != "source"
            for key in dataclasses.fields(getattr(defaults, section.name))}
    documented = set(re.findall(r"\* - ``(\w+\.\w+)``", text))
    assert keys == documented


def test_every_index_is_in_the_operations_guide() -> None:
    text = (DOCS / "operations.rst").read_text()
    rows = set(re.findall(r"^(sys\.\w+)\s+``(\w+)``", text, flags=re.M))
    assert rows == {(index.collection, index.name) for index in layout.INDEXES}


def test_every_metric_is_in_the_operations_guide(config: Config) -> None:
    now = datetime.now(UTC)
    readings = StoreReadings(
        history={"created": now, "pending": 1, "jobs": [{"name": "a.B", "state": "pending",
                                                         "n": 1}]},
        summarizer_lease={"expires_at": now},
        workers=[{"_id": "w", "heartbeat": now, "pool": "default", "jobs": []}])
    instruments = Instruments(config)
    instruments.observe({"name": "complete_job", "channel": "queue",
                         "data": {"name": "a.B", "runtime_s": 1.0}})
    instruments.observe({"name": "request_start_job", "channel": "queue",
                         "data": {"name": "a.B", "waited_s": 1.0}})
    exposed = set(re.findall(r"^# TYPE (\w+) ", instruments.render(readings, now).decode(),
                             flags=re.M))
    text = (DOCS / "operations.rst").read_text()
    documented = set(re.findall(r"^``(monq_\w+)", text, flags=re.M))
    # the client's standard *_created series are explained once, not listed
    assert documented == {m for m in exposed if not m.endswith("_created")}


def test_readme_links_every_page() -> None:
    readme = (ROOT / "README.rst").read_text()
    for page in sorted(DOCS.glob("*.rst")):
        assert f"docs/{page.name}" in readme, page.name


@pytest.mark.parametrize("name", FIGURE_DOCS)
def test_every_figure_has_its_command_date_and_server(name: str) -> None:
    text = (DOCS / name).read_text()
    blocks = list(BLOCK.finditer(text))
    assert blocks, f"{name} has no figures"
    for match in blocks:
        lines = [line[4:] for line in match.group(1).splitlines() if line.strip()]
        assert lines[0].startswith("$ "), f"{name}: a block of figures without its command"
        commands = [line for line in lines if line.startswith("$ ")]
        files = [f for c in commands for f in re.findall(r"(?:scripts|tests)/\w+\.py", c)]
        assert files, f"{name}: {commands} run no script or test"
        assert all((ROOT / f).is_file() for f in files), files
        for command in commands:
            for script in re.findall(r"scripts/\w+\.py", command):
                source = (ROOT / script).read_text()
                for option in OPTION.findall(command.split(script, 1)[1]):
                    assert f'"{option}"' in source, f"{script} has no option {option}"
        output = lines[len(commands):]
        assert any(re.search(r"\d", line) for line in output), commands
        before = re.split(r"\n[-=~^]{3,}\n", text[:match.start()])[-1]  # its section
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", before), f"{command}: no date"
        assert re.search(r"SecantusDB|MongoDB \d|Redis \d", before), f"{command}: no server"
