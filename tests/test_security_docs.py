"""docs/security.rst lists every API route and dashboard page with the permission
it needs, generated from the code here and compared, so the table cannot drift."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tests.route_table import api_rows, page_rows

ROW = re.compile(r"^   \* - ``([^`]+)``\n     - ([A-Z, ]+)\n     - (\S[^\n]*)$", re.M)


def documented(title: str) -> list[tuple[str, str, str]]:
    text = (ROOT / "docs" / "security.rst").read_text()
    start = text.index(f".. list-table:: {title}")
    end = text.find(".. list-table::", start + 1)
    return ROW.findall(text[start:end if end != -1 else len(text)])


def test_every_api_route_is_in_the_table_with_its_permission() -> None:
    assert documented("API routes") == api_rows()


def test_every_dashboard_page_is_in_the_table_with_its_permission() -> None:
    assert documented("Dashboard pages") == page_rows()


def test_the_limits_in_the_text_are_the_codes() -> None:
    from monq.api import bodies
    from monq.api.jobs import MAX_GLOB, MAX_STARS
    from monq.core.config import Config
    from monq.notify import templates

    text = " ".join((ROOT / "docs" / "security.rst").read_text().split())
    config = Config()
    for phrase in (f"more than {bodies.MAX_DEPTH} levels",
                   f"at most {templates.MAX_RANGE:,} items",
                   f"nested at most {templates.MAX_LOOP_DEPTH} deep",
                   f"at most {templates.MAX_ITERATIONS:,} iterations",
                   f"{templates.MAX_RENDER_S} s of rendering",
                   f"{templates.MAX_OUTPUT_CHARS:,} characters of output",
                   f"at most {MAX_GLOB} characters and {MAX_STARS} ``*``",
                   f"``api.login_max_failures`` ({config.api.login_max_failures})",
                   f"``api.login_lockout_s`` ({config.api.login_lockout_s} s)",
                   f"``api.max_body_bytes`` ({config.api.max_body_bytes // 1048576} MiB)"):
        assert phrase in text, phrase
