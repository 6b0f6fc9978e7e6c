"""Vane as a package: the wheels `pip install .` builds hold the compiled accelerators and every data file, and
`vane up` from a venv holding only those wheels (no checkout on the path) starts a stack that ingests a trace
and answers its metrics.

The wheels are built from a copy of the working tree (what git tracks or would track), as a user's clone has it,
with pip's build isolation, as `pip install .` builds them. The fresh venv borrows the third-party dependencies
from the test venv's site-packages (a path in a .pth file, whose own .pth hooks, such as the editable installs of
this checkout, are not run): resolving them from the registry is tests/bench/bench_install.py's job.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Infra
from tests.e2e.test_vane_up import HTTP_PORTS, PORT_VARIABLES, VaneUp
from tests.support.processes import REPO, free_port

ACCELERATORS = sorted(str(p.relative_to(REPO).with_suffix("")) for p in (REPO / "services").glob("*/_*.c"))


def _source_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [name for name in listed.stdout.splitlines() if (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The SDK's and the server's wheels, built from a clean copy of the tree."""
    source = tmp_path_factory.mktemp("source")
    archive = source / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        for name in _source_files():
            tar.add(REPO / name, arcname=name)
    with tarfile.open(archive) as tar:
        tar.extractall(source, filter="data")
    out = tmp_path_factory.mktemp("wheels")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), "./sdk/python", "."]
    subprocess.run(build, cwd=source, check=True, capture_output=True)
    found = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    assert set(found) == {"vane", "vane_server"}, found
    return found


def test_the_server_wheel_holds_the_compiled_accelerators_and_every_data_file(wheels: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(wheels["vane_server"]).namelist())
    for accelerator in ACCELERATORS:
        assert any(re.fullmatch(rf"{re.escape(accelerator)}\.cpython-\d+[^/]*\.so", n) for n in names), accelerator
    data = [n for n in _source_files() if n.startswith("services/") and not n.endswith(".py")]
    assert {"services/ingest/prices.json", "services/evaluator/model/tokenizer.json"} <= set(data)
    assert any(n.startswith("services/common/migrations/") for n in data)
    missing = sorted(set(data) - names)
    assert not missing, f"not in the wheel: {missing}"


def test_the_sdk_wheel_holds_its_generated_code(wheels: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(wheels["vane"]).namelist())
    sdk = [n.removeprefix("sdk/python/") for n in _source_files() if n.startswith("sdk/python/vane/")]
    assert sdk and not sorted(set(sdk) - names)


@pytest.fixture(scope="module")
def fresh_venv(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*install, *map(str, wheels.values())], check=True, capture_output=True)
    (site / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def test_the_fresh_venv_runs_vane_from_its_own_site_packages(fresh_venv: Path, tmp_path: Path) -> None:
    probe = (
        "import json, services, vane, services.aggregator._bins, services.ingest._canonical;"
        "print(json.dumps([services.__file__, vane.__file__, services.aggregator._bins.__file__]))"
    )
    python = fresh_venv / "bin" / "python"
    result = subprocess.run([python, "-c", probe], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for path in json.loads(result.stdout):
        assert Path(path).resolve().is_relative_to(fresh_venv.resolve()), path
    helped = subprocess.run([fresh_venv / "bin" / "vane", "--help"], env=_clean_env(), capture_output=True, text=True)
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stderr


class WheelVaneUp(VaneUp):
    """`vane up` from the fresh venv's entry point, in an empty directory, with no checkout on the path."""

    def __init__(self, venv: Path, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "vane"), "up"],
            cwd=cwd,
            env=_clean_env(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()


@pytest.fixture
def stack(fresh_venv: Path, tmp_path: Path, infra: Infra) -> Iterator[tuple[WheelVaneUp, dict[str, str]]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    ports = {name: str(free_port()) for name in (*PORT_VARIABLES, "VANE_GATEWAY_PORT")}
    env = {**infra.env(VANE_NAMESPACE=f"{infra.namespace}w{secrets.token_hex(2)}"), **ports}
    up = WheelVaneUp(fresh_venv, empty, env)
    try:
        yield up, env
    finally:
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGINT)
            try:
                up.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.proc.kill()


def _generation(trace_id: str) -> bytes:
    now = time.time_ns()
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
    }
    span = {
        "traceId": trace_id,
        "spanId": secrets.token_hex(8),
        "name": "chat gpt-4o-mini",
        "startTimeUnixNano": str(now - 400_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [
            {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
            for k, v in attributes.items()
        ],
    }
    resource = {
        "attributes": [
            {"key": "service.name", "value": {"stringValue": "wheel-app"}},
            {"key": "project_version_name", "value": {"stringValue": "from-the-wheel"}},
        ]
    }
    return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}).encode()


def test_vane_up_from_the_wheel_ingests_a_trace_and_answers_its_metrics(
    stack: tuple[WheelVaneUp, dict[str, str]],
) -> None:
    up, env = stack
    output = up.wait_for("Press Ctrl-C to stop.")
    for service, variable in HTTP_PORTS.items():
        assert httpx.get(f"http://127.0.0.1:{env[variable]}/readyz", timeout=5).status_code == 200, service
    found = re.search(r"export VANE_SECRET_KEY=(sk-vane-\S+)", output)
    assert found is not None, output
    headers = {"Authorization": f"Bearer {found.group(1)}"}

    ingest = f"http://127.0.0.1:{env['VANE_INGEST_HTTP_PORT']}/v1/traces"
    sent = httpx.post(
        ingest, content=_generation(secrets.token_hex(16)), headers={**headers, "Content-Type": "application/json"}
    )
    assert sent.status_code == 200, sent.text

    metrics = f"http://127.0.0.1:{env['VANE_AGGREGATOR_PORT']}/api/v1/versions/metrics"
    deadline, rows = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        body = httpx.get(metrics, params={"project_name": "wheel-app"}, headers=headers, timeout=5).json()
        rows = [r for r in body["versions"] if r["version"] == "from-the-wheel"]
        if rows and rows[0]["generation_count"] >= 1:
            break
        time.sleep(0.3)
    assert rows, "the trace never reached the metrics"
    assert (rows[0]["generation_count"], rows[0]["total_input_tokens"], rows[0]["total_output_tokens"]) == (1, 120, 30)

    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=60) == 0, "\n".join(up.lines)
