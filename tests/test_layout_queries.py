"""The store owns every query document: no module under monq/ outside monq/core/store
spells a MongoDB operator (``"$in"``, ``"$set"``, ...). Found by reading the source
text, so an operator in a helper, a constant or a comment-free dict is caught alike."""

from __future__ import annotations

import re
from pathlib import Path

import monq

PACKAGE = Path(monq.__file__).resolve().parent
STORE = PACKAGE / "core" / "store"
OPERATOR = re.compile(r"""["']\$[a-zA-Z]+["']""")
# Quoted "$words" that are not MongoDB operators: JSON Schema keywords (the OpenAPI
# document and parameter schemas use them).
NOT_OPERATORS = frozenset({'"$ref"', "'$ref'", '"$schema"', "'$schema'", '"$id"', "'$id'",
                           '"$defs"', "'$defs'"})


def operators_outside_store() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if STORE in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{path.relative_to(PACKAGE.parent)}:{number}: {hit}"
                      for hit in OPERATOR.findall(line) if hit not in NOT_OPERATORS]
    return found


def test_no_module_outside_the_store_builds_a_query_document() -> None:
    assert operators_outside_store() == []


def test_the_rule_sees_operators() -> None:
    assert OPERATOR.findall("""query = {"state": {"$in": states}, '$or': []}""") == [
        '"$in"', "'$or'"]
    assert OPERATOR.findall(r'pattern = re.compile(r"^job:\d+$")') == []
