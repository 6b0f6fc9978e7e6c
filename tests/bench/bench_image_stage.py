"""The image's build stage without Docker: k8s/Dockerfile's `RUN /opt/vane/bin/pip …` commands of the build
stage, run as written in a scratch venv standing in for /opt/vane, then the image's entry point and healthcheck
import from it. Prints each command's time and the venv's size (what the runtime stage copies).

Run: .venv/bin/python -m tests.bench.bench_image_stage   (reaches the package registry; about two minutes cold)
Too slow for the test suite; tests/e2e/test_image.py checks the Dockerfile, the lock and the healthcheck.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.footprint import tree_bytes
from tests.support.processes import REPO


def build_stage_pip_commands(dockerfile: Path) -> list[str]:
    """The build stage's RUN commands that call the image venv's pip, in order."""
    text = dockerfile.read_text().replace("\\\n", " ")
    commands, stage = [], ""
    for line in (line.strip() for line in text.splitlines()):
        if line.upper().startswith("FROM "):
            stage = line.split()[-1]
        elif stage == "build" and line.upper().startswith("RUN ") and "/opt/vane/bin/pip" in line:
            commands.append(line[4:].strip())
    return commands


def main() -> int:
    commands = build_stage_pip_commands(REPO / "k8s" / "Dockerfile")
    assert commands, "no pip commands in the build stage"
    with tempfile.TemporaryDirectory(prefix="vane-image-") as scratch:
        venv = Path(scratch) / "vane"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        empty = tree_bytes(venv)
        for command in commands:
            line = command.replace("/opt/vane", str(venv))
            started = time.perf_counter()
            done = subprocess.run(["bash", "-c", line], cwd=REPO, capture_output=True, text=True)
            if done.returncode:
                print(done.stdout + "\n".join(e for e in done.stderr.splitlines() if "WARNING: Location" not in e))
                done.check_returncode()
            print(f"{time.perf_counter() - started:6.1f} s  {command}")
        subprocess.run([str(venv / "bin" / "vane"), "--help"], check=True, capture_output=True)
        # PID 1 here runs no Vane service: the healthcheck imports its settings from the venv and passes.
        subprocess.run([str(venv / "bin" / "python"), str(REPO / "k8s" / "healthcheck.py"), "1"], check=True)
        print(f"image venv: {(tree_bytes(venv) - empty) / 1e6:.0f} MB; `vane --help` and the healthcheck run from it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
