"""The README stays true: its configuration table lists every variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_VAR = re.compile(r"\bVANE_[A-Z0-9_]+\b")


def _variables_read_by_code() -> set[str]:
    found: set[str] = set()
    for root in (REPO / "services", REPO / "sdk" / "python" / "vane"):
        for path in root.rglob("*.py"):
            found |= set(_VAR.findall(path.read_text()))
    return found


def test_readme_configuration_table_lists_every_variable_the_code_reads() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(_VAR.findall(readme))
    missing = sorted(_variables_read_by_code() - documented)
    assert not missing, f"README.md does not document {missing}"


def test_readme_names_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "vane up" in readme
    assert "bash tests/run" in readme
