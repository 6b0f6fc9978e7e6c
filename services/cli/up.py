"""`vane up`: the whole stack on one machine, from whatever is there to a printed key.

Probe NATS, Postgres and Redis → start embedded ones under ./.vane/ for those that do not answer →
migrate → make or reuse the local project's key → start the five services and the gateway (Caddy,
services/gateway/) → wait until every /readyz answers 200 → print the gateway's URL, the endpoints
and the key → wait for Ctrl-C, SIGTERM or a dead service → stop the services (SIGTERM, then SIGKILL
after a deadline) → stop the embedded servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import asyncpg
import click
import httpx

from services.cli.embedded import EmbeddedStack, die_with_parent, port_is_free, unreachable
from services.common import db
from services.common.auth import KeyPair, new_key_pair
from services.common.settings import Settings
from services.gateway.caddy import Gateway

SERVICES = ("registry", "ingest", "evaluator", "aggregator", "alert")
READY_DEADLINE_SECONDS = 120.0
LOCAL_PROJECT = "local"


class Stopped(BaseException):
    """Ctrl-C or SIGTERM: unwinds whatever is running to the clean-up (BaseException, so no
    `except Exception` on the way swallows it)."""


class StartFailed(RuntimeError):
    """The stack could not come up; the message says why and what to do."""


@dataclass(frozen=True)
class Endpoints:
    host: str
    settings: Settings

    @property
    def http(self) -> dict[str, str]:
        """Each service's HTTP base URL (ingest's is also its OTLP/HTTP receiver)."""
        s = self.settings
        ports = {
            "registry": s.registry_http_port,
            "ingest": s.ingest_http_port,
            "evaluator": s.evaluator_port,
            "aggregator": s.aggregator_port,
            "alert": s.alert_port,
        }
        return {name: f"http://{self.host}:{port}" for name, port in ports.items()}

    @property
    def gateway(self) -> str:
        """The one origin: the dashboard at `/` and every public API."""
        return f"http://{self.host}:{self.settings.gateway_port}"

    def upstreams(self) -> dict[str, str]:
        """Each service's HTTP host:port, where the gateway sends its paths."""
        return {name: url.removeprefix("http://") for name, url in self.http.items()}

    @property
    def registry_grpc(self) -> str:
        return f"{self.host}:{self.settings.registry_grpc_port}"

    @property
    def ingest_grpc(self) -> str:
        return f"{self.host}:{self.settings.ingest_grpc_port}"

    def as_dict(self) -> dict[str, str]:
        """What `services.cli.demo.load_demo` is given."""
        http = self.http
        return {
            "registry_http": http["registry"],
            "registry_grpc": self.registry_grpc,
            "ingest_http": http["ingest"],
            "ingest_grpc": self.ingest_grpc,
            "evaluator": http["evaluator"],
            "aggregator": http["aggregator"],
            "alert": http["alert"],
        }

    def ports(self) -> dict[str, int]:
        """Every listening port by the variable that overrides it."""
        s = self.settings
        return {
            "VANE_REGISTRY_GRPC_PORT": s.registry_grpc_port,
            "VANE_REGISTRY_HTTP_PORT": s.registry_http_port,
            "VANE_INGEST_HTTP_PORT": s.ingest_http_port,
            "VANE_INGEST_GRPC_PORT": s.ingest_grpc_port,
            "VANE_EVALUATOR_PORT": s.evaluator_port,
            "VANE_AGGREGATOR_PORT": s.aggregator_port,
            "VANE_ALERT_PORT": s.alert_port,
            "VANE_GATEWAY_PORT": s.gateway_port,
        }


@dataclass
class ServiceChild:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    ready_url: str

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def raise_stopped(signum: int, _: FrameType | None) -> None:
        raise Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        # While cleaning up, a second Ctrl-C must not leave half the stack running.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)


def run_stack(demo: bool) -> int:
    """Run the stack until Ctrl-C or SIGTERM (exit 0) or until a service dies (exit 1)."""
    settings = Settings.from_env()
    home = Path.cwd() / ".vane"
    (home / "logs").mkdir(parents=True, exist_ok=True)
    stack = EmbeddedStack(home, settings)
    children: list[ServiceChild] = []
    try:
        with _stop_on_signals():
            endpoints = Endpoints(_display_host(settings.bind_host), settings)
            _check_ports_free(endpoints)
            urls = _infrastructure(settings, stack)
            _migrate(urls["postgres"])
            project, keys = _local_project(home, settings)
            env = _service_env(urls, project, keys)
            children = [_start_service(name, env, home / "logs", endpoints) for name in SERVICES]
            children.append(_start_gateway(home, settings, endpoints))
            _wait_ready(children)
            _print_banner(endpoints, urls, stack, project, keys, urls["postgres"])
            if demo:
                _load_demo(endpoints, keys.secret_key)
            click.echo("Press Ctrl-C to stop.", err=False)
            dead = _watch(children)
            click.echo(f"vane up: {dead.name} exited with {dead.proc.returncode}:\n{dead.tail()}", err=True)
            return 1
    except Stopped as stop:
        click.echo(f"vane up: {stop} received, stopping…")
        return 0
    except (StartFailed, db.SchemaMismatch) as exc:
        click.echo(f"vane up: {exc}", err=True)
        return 1
    finally:
        _stop_services(children, settings.shutdown_grace_seconds + 5.0)
        stack.stop()
        click.echo("vane up: stopped")


def _display_host(bind_host: str) -> str:
    return "127.0.0.1" if bind_host in ("0.0.0.0", "::", "") else bind_host


def _check_ports_free(endpoints: Endpoints) -> None:
    taken = [f"{port} ({var})" for var, port in endpoints.ports().items() if not port_is_free(port, endpoints.host)]
    if taken:
        raise StartFailed(f"ports in use: {', '.join(taken)}; stop what holds them or set those variables")


def _infrastructure(settings: Settings, stack: EmbeddedStack) -> dict[str, str]:
    urls = {"postgres": settings.database_url, "nats": settings.nats_url, "redis": settings.redis_url}
    missing = unreachable(settings)
    for name in sorted(missing):
        click.echo(f"vane up: {name} does not answer at {urls[name]}: starting one under {stack.root / name}")
    try:
        urls.update(stack.start(missing))
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise StartFailed(str(exc)) from None
    return urls


def _migrate(database_url: str) -> None:
    try:
        applied = asyncio.run(db.migrate(database_url))
    except OSError as exc:
        raise StartFailed(f"cannot reach Postgres at {database_url}: {exc}") from None
    if applied:
        click.echo(f"vane up: applied migrations {applied[0]}..{applied[-1]}")


def _local_project(home: Path, settings: Settings) -> tuple[str, KeyPair]:
    """The key the user set (VANE_INIT_PROJECT and its keys), else the one kept in .vane/credentials.json."""
    if settings.init_project and settings.init_public_key and settings.init_secret_key:
        return settings.init_project, KeyPair(settings.init_public_key, settings.init_secret_key)
    path = home / "credentials.json"
    if path.exists():
        stored = json.loads(path.read_text())
        return stored["project"], KeyPair(stored["public_key"], stored["secret_key"])
    keys = new_key_pair()
    body = json.dumps({"project": LOCAL_PROJECT, "public_key": keys.public_key, "secret_key": keys.secret_key})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(body + "\n")
    return LOCAL_PROJECT, keys


def _service_env(urls: dict[str, str], project: str, keys: KeyPair) -> dict[str, str]:
    return {
        **os.environ,
        "VANE_DATABASE_URL": urls["postgres"],
        "VANE_NATS_URL": urls["nats"],
        "VANE_REDIS_URL": urls["redis"],
        "VANE_INIT_PROJECT": project,
        "VANE_INIT_PUBLIC_KEY": keys.public_key,
        "VANE_INIT_SECRET_KEY": keys.secret_key,
    }


def _start_service(name: str, env: dict[str, str], log_dir: Path, endpoints: Endpoints) -> ServiceChild:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "serve", name],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the terminal's Ctrl-C reaches us only: we stop the children in order
            preexec_fn=die_with_parent,
        )
    return ServiceChild(name, proc, log_path, f"{endpoints.http[name]}/readyz")


def _start_gateway(home: Path, settings: Settings, endpoints: Endpoints) -> ServiceChild:
    """Caddy on VANE_GATEWAY_PORT; its /readyz is the aggregator's, so it is ready when that is."""
    listen = f"{settings.bind_host}:{settings.gateway_port}"
    try:
        gateway = Gateway(home / "gateway", listen, endpoints.upstreams()).start(preexec_fn=die_with_parent)
    except (RuntimeError, OSError) as exc:
        raise StartFailed(f"the gateway could not start: {exc}") from None
    assert gateway.proc is not None
    return ServiceChild("gateway", gateway.proc, gateway.log_path, f"{endpoints.gateway}/readyz")


def _wait_ready(children: list[ServiceChild]) -> None:
    pending = {child.name: child for child in children}
    deadline = time.monotonic() + READY_DEADLINE_SECONDS
    with httpx.Client(timeout=2.0) as http:
        while pending:
            for name, child in list(pending.items()):
                if child.proc.poll() is not None:
                    raise StartFailed(f"{name} exited with {child.proc.returncode} at start:\n{child.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(child.ready_url).status_code == 200:
                        del pending[name]
            if pending and time.monotonic() > deadline:
                names = ", ".join(pending)
                tails = "\n".join(f"--- {c.name} ({c.log_path})\n{c.tail()}" for c in pending.values())
                raise StartFailed(f"not ready after {READY_DEADLINE_SECONDS:.0f}s: {names}\n{tails}")
            time.sleep(0.2)


def _project_id(database_url: str, public_key: str) -> str:
    async def fetch() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return str(await conn.fetchval("SELECT project_id FROM api_keys WHERE public_key = $1", public_key))
        finally:
            await conn.close()

    return asyncio.run(fetch())


def _print_banner(
    endpoints: Endpoints,
    urls: dict[str, str],
    stack: EmbeddedStack,
    project: str,
    keys: KeyPair,
    database_url: str,
) -> None:
    http = endpoints.http
    lines = [
        "",
        f"Vane is up at {endpoints.gateway}   (the dashboard, and every API below on one origin)",
        f"  registry     HTTP {http['registry']}   gRPC {endpoints.registry_grpc}",
        f"  ingest       OTLP/HTTP {http['ingest']}/v1/traces   OTLP/gRPC {endpoints.ingest_grpc}",
        f"  evaluator    HTTP {http['evaluator']}",
        f"  aggregator   HTTP {http['aggregator']}   (query API; OpenAPI at /schema/openapi.json)",
        f"  alert        HTTP {http['alert']}",
    ]
    for name in ("postgres", "nats", "redis"):
        origin = "embedded, under ./.vane/" + name if name in stack.servers else "external"
        lines.append(f"  {name:<12} {urls[name]}   ({origin})")
    lines += [
        "",
        f"Project {project} ({_project_id(database_url, keys.public_key)})",
        f"  public key: {keys.public_key}",
        f"  secret key: {keys.secret_key}",
        "",
        "For your app and the SDK:",
        f"  export VANE_SECRET_KEY={keys.secret_key}",
        f"  export VANE_PUBLIC_KEY={keys.public_key}",
        f"  export VANE_REGISTRY={endpoints.registry_grpc}",
        f"  export VANE_OTLP_ENDPOINT={http['ingest']}",
        f"  export VANE_API_URL={http['ingest']}",
        "",
        "Logs: ./.vane/logs/<service>.log",
    ]
    click.echo("\n".join(lines))


def _load_demo(endpoints: Endpoints, secret_key: str) -> None:
    if importlib.util.find_spec("services.cli.demo") is None:
        click.echo("vane up: the demo workload lands with the aggregator; starting without it")
        return
    demo = importlib.import_module("services.cli.demo")
    click.echo("vane up: loading the demo workload…")
    try:
        asyncio.run(demo.load_demo(endpoints.as_dict(), secret_key))
    except Exception as exc:  # the stack is up and useful without the demo: say so and keep serving
        click.echo(f"vane up: the demo workload failed ({type(exc).__name__}: {exc}); the stack stays up", err=True)
        return
    click.echo("vane up: demo workload loaded")


def _watch(children: list[ServiceChild]) -> ServiceChild:
    """Block until a service exits (returning it); Ctrl-C or SIGTERM raise Stopped meanwhile."""
    while True:
        for child in children:
            if child.proc.poll() is not None:
                return child
        time.sleep(0.5)


def _stop_services(children: list[ServiceChild], deadline_seconds: float) -> None:
    running = [c for c in children if c.proc.poll() is None]
    for child in running:
        with contextlib.suppress(ProcessLookupError):
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + deadline_seconds
    for child in running:
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            click.echo(f"vane up: {child.name} did not stop in time: killing it", err=True)
            child.proc.kill()
            child.proc.wait()
