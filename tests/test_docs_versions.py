"""The "Supported versions" table of docs/index.md states pyproject.toml's ranges.

Each row names its range as ``<lower> up to <upper> (not included)``, exactly the bounds
of ``pyproject.toml``'s dependencies (``>=lower,<upper``): a reader cannot mistake an
excluded upper bound for a supported release, and a changed bound fails here until the
table says it too.
"""

from __future__ import annotations

import re
import tomllib

from tests.test_docs import ROOT, page

#: the table's rows, by their first cell, and the distributions each one covers
ROWS = {
    "Django": ["django"],
    "strawberry-graphql": ["strawberry-graphql"],
    "strawberry-graphql-django": ["strawberry-graphql-django"],
    "channels / channels-redis": ["channels", "channels-redis"],
    "graphql-core": ["graphql-core"],
    "redis (redis-py)": ["redis"],
}
RANGE = re.compile(r"(?P<lower>[\d.]+) up to (?P<upper>[\d.]+) \(not included\)")


def _table() -> dict[str, str]:
    """The table's rows: first cell -> the "Supported" cell."""
    section = page("index.md").split("## Supported versions", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[1]
    return rows


def test_each_range_is_pyprojects_with_its_upper_bound_not_included() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dependencies = set(project["dependencies"])
    table = _table()
    assert set(table) == {"Python", *ROWS}, "a row was added or renamed: update ROWS"
    for name, distributions in ROWS.items():
        match = RANGE.search(table[name])
        assert match, f"{name}: no '<lower> up to <upper> (not included)' in {table[name]!r}"
        for distribution in distributions:
            requirement = f"{distribution}>={match['lower']},<{match['upper']}"
            assert requirement in dependencies, f"{name}: pyproject.toml has no {requirement}"
    # Python: a list of versions, and requires-python's missing upper bound said as such
    assert project["requires-python"] == ">=3.11"
    assert 'requires-python = ">=3.11"' in table["Python"]
    assert "no upper bound" in table["Python"]
