"""The committed generated code is what proto/generate.py makes, and the schemas are buf-lint clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "sdk" / "python" / "vane" / "v1"


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_regenerating_the_protos_changes_nothing_committed(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "proto" / "generate.py"), str(tmp_path)], check=True, cwd=REPO)
    fresh, committed = _files(tmp_path / "vane" / "v1"), _files(COMMITTED)
    assert sorted(fresh) == sorted(committed), "generated files differ: run .venv/bin/python proto/generate.py"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{stale} differ from what proto/generate.py makes: regenerate and commit"


def _buf() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "buf"
    found = str(candidate) if candidate.exists() else shutil.which("buf")
    if found is None:
        pytest.fail("no buf binary: install the dev extra (buf-bin)")
    return found


def test_protos_pass_buf_lint() -> None:
    done = subprocess.run([_buf(), "lint"], cwd=REPO / "proto", capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
