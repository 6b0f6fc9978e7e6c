"""The container image, tested without a Docker daemon (there is none on this machine or CI's): the Dockerfile
lints clean under hadolint, its lock pins what the server needs, and its HEALTHCHECK answers for a live service
and fails for a dead one."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.footprint import closure, heavy
from tests.support.processes import REPO, ServiceProcess

DOCKERFILE = REPO / "k8s" / "Dockerfile"
LOCK = REPO / "k8s" / "requirements.lock"
HEALTHCHECK = REPO / "k8s" / "healthcheck.py"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", re.MULTILINE)


def _pins() -> dict[str, str]:
    text = LOCK.read_text()
    pins = {canonicalize_name(name): version for name, version in _PIN.findall(text)}
    assert len(pins) == text.count("=="), "every line is name==version with its sha256"
    return pins


def test_the_dockerfile_lints_clean_under_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([hadolint, "--failure-threshold", "style", DOCKERFILE], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lock_pins_exactly_what_the_server_and_sdk_need_and_no_torch() -> None:
    pins = _pins()
    needed = set(closure("vane-server")) - {"vane", "vane-server"}
    assert set(pins) == needed, (
        f"run k8s/lock.py: missing {sorted(needed - set(pins))}, extra {sorted(set(pins) - needed)}"
    )
    assert heavy(pins) == []


def test_the_locked_versions_meet_the_declared_requirements() -> None:
    pins = _pins()
    for root in ("vane-server", "vane"):
        for line in closure(root)[root].requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(requirement.name)
            if name in pins:
                assert requirement.specifier.contains(pins[name], prereleases=True), (line, pins[name])


def _healthcheck(pid: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, HEALTHCHECK, str(pid)], env=env, capture_output=True, text=True)


def test_the_healthcheck_follows_the_service_the_container_runs(
    start_service: Callable[..., ServiceProcess],
) -> None:
    alert = start_service("alert")
    assert alert.proc is not None
    assert _healthcheck(alert.proc.pid, alert.env).returncode == 0
    alert.kill()
    # The process is gone: PID 1 of a container whose service died is the same command line, not answering.
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "serve", "alert"])
    try:
        failed = _healthcheck(fake.pid, alert.env)
        assert failed.returncode == 1 and "alert" in failed.stderr
    finally:
        fake.kill()
        fake.wait()


def test_the_healthcheck_passes_a_container_that_runs_no_service() -> None:
    migrate = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "migrate"])
    try:
        assert _healthcheck(migrate.pid, {}).returncode == 0
    finally:
        migrate.kill()
        migrate.wait()
