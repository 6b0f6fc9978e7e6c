"""The TypeScript SDK (sdk/js) for tests and benchmarks: installed from its lock file and built
with tsc, and a Node process that makes the SDK calls a test sends it (sdk/js/scenarios/driver.mjs)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import IO, Any

from tests.support.processes import REPO

SDK_JS = REPO / "sdk" / "js"
# Written after a successful `npm ci`: the lock file it installed, so an unchanged lock skips the install.
INSTALLED_MARK = SDK_JS / "node_modules" / ".vane-installed-lock"


def _run(*command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=SDK_JS, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def build_sdk() -> Path:
    """`npm ci` unless node_modules already holds this lock file's packages, then `npm run build`
    (tsc --strict, ES module and CommonJS builds). Returns the SDK's directory."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("the TypeScript SDK's tests need Node.js 20+ and npm on the PATH")
    lock = hashlib.sha256((SDK_JS / "package-lock.json").read_bytes()).hexdigest()
    if not INSTALLED_MARK.exists() or INSTALLED_MARK.read_text().strip() != lock:
        _run("npm", "ci", "--no-audit", "--no-fund")
        INSTALLED_MARK.write_text(lock)
    _run("npm", "run", "build")
    return SDK_JS


def run_node_tests() -> subprocess.CompletedProcess[str]:
    """The SDK's own tests of its pure parts (node --test), as they ran."""
    return subprocess.run(
        ["node", "--test", "test/"], cwd=SDK_JS, capture_output=True, text=True, timeout=120, check=False
    )


def pack_listing() -> str:
    """What `npm pack` would put in the tarball, as npm's JSON (the build has already run)."""
    return _run("npm", "pack", "--dry-run", "--json", "--ignore-scripts").stdout


class NodeDriver:
    """One `node scenarios/driver.mjs` process: `call(op, **args)` sends a call and returns its answer."""

    def __init__(self, env: dict[str, str] | None = None, script: str = "scenarios/driver.mjs", *args: str) -> None:
        self.proc = subprocess.Popen(
            ["node", script, *args],
            cwd=SDK_JS,
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def call(self, op: str, **args: Any) -> Any:
        stdin: IO[str] | None = self.proc.stdin
        stdout: IO[str] | None = self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps({"op": op, **args}) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the Node driver ended ({self.proc.poll()}):\n{self.stderr()}")
        return json.loads(line)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def close(self, timeout: float = 30) -> None:
        """Close stdin: the driver closes its clients (flushing spans) and exits."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
