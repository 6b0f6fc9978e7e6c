"""The install a new user makes: the README's first command into a fresh venv, timed, and its size on disk.

Run: .venv/bin/python -m tests.bench.bench_install [--extras embedded] [--wheel]
(reaches the package registry; pip's own cache makes a second run faster, so the first run is the figure).
--wheel installs the built wheels (`pip install ./sdk/python .`) instead of the editable checkout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.footprint import heavy, tree_bytes
from tests.support.processes import REPO


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extras", default="embedded", help="the server's extras, as the README installs them")
    parser.add_argument("--wheel", action="store_true", help="a non-editable install")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vane-install-") as scratch:
        venv = Path(scratch) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        empty = tree_bytes(venv)
        server = f".[{args.extras}]" if args.extras else "."
        editable = [] if args.wheel else ["-e"]
        command = [str(venv / "bin" / "pip"), "install", "-q", *editable, "./sdk/python", *editable, server]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
        # (pip's configuration here names local indexes that may not exist: one warning per package, dropped)
        print("\n".join(line for line in done.stderr.splitlines() if "WARNING: Location" not in line), end="")
        done.check_returncode()
        seconds = time.perf_counter() - started
        size = tree_bytes(venv) - empty
        listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True, text=True)
        names = [line.split("==")[0].lower() for line in listed.stdout.splitlines()]
        print(f"install: {' '.join(command[1:])}")
        print(f"time: {seconds:.1f} s   size: {size / 1e6:.0f} MB   distributions: {len(names)}")
        print(f"torch or CUDA libraries: {heavy(names) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
