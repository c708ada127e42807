"""A throwaway PostgreSQL 15 server for tests: Debian's ``postgresql-15`` binaries, data in a temporary directory,
durability off (it is thrown away), a free loopback port and its unix socket inside the temporary directory.

As a pytest plugin (``tests/conftest.py`` loads it): ``postgres_server`` (one server per session) and
``postgres_dsn`` (a fresh, empty database per test)."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import free_port, stop_process

PG_BIN = Path(os.environ.get("VOICE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PACKAGE = "postgresql-15"
USER = "postgres"  # the superuser initdb creates; also the OS user the server runs as when we are root
#: thrown away after the tests: no need to survive a power cut
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresServer:
    """One ``postgres`` process: :meth:`start`, :meth:`create_database`, :meth:`stop` (removes every file).
    ``settings`` are server settings (``-c name=value``); the default trades durability for speed."""

    def __init__(self, bin_dir: Path = PG_BIN, settings: dict[str, str] | None = None) -> None:
        self.bin_dir = bin_dir
        self.settings = FAST if settings is None else settings
        self.port = free_port()
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    @staticmethod
    def _as_user() -> dict[str, str]:
        """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user (what ``runuser -u postgres``
        does, without a wrapper process between us and the server's signals)."""
        return {"user": USER, "group": USER} if os.geteuid() == 0 else {}

    def dsn(self, database: str = "postgres") -> str:
        """The TCP DSN of ``database`` (what ``VOICE_DATABASE_URL`` would hold)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> PostgresServer:
        """initdb, start the server, and wait until it accepts connections."""
        if not (self.bin_dir / "postgres").exists():
            raise RuntimeError(
                f"PostgreSQL 15 is not installed ({self.bin_dir}/postgres is missing): "
                f"apt-get install -y {PACKAGE}  (make test installs it)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="voice-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, USER, USER)
        data = self.dir / "data"
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True, cwd=self.dir, **self._as_user(),
        )
        log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 - the server writes it until stop()
        self._proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
             *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}"))],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, **self._as_user(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while self.psql("SELECT 1", check=False).returncode != 0:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                output = (self.dir / "postgres.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"postgres did not start:\n{output}")
            time.sleep(0.05)
        return self

    def psql(self, sql: str, database: str = "postgres", check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``sql`` with psql over the unix socket."""
        assert self.dir is not None, "not started"
        return subprocess.run(
            [str(self.bin_dir / "psql"), "-h", str(self.dir), "-p", str(self.port), "-U", USER, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            check=check, capture_output=True, text=True,
        )

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        name = f"test_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still in it."""
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Fast shutdown, then remove the data directory."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGINT, 10)  # "fast" shutdown: disconnects clients, no waiting for them
            self._proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session (fails, naming the package, if PostgreSQL 15 is missing)."""
    try:
        server = PostgresServer().start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """The DSN of a fresh, empty database, dropped after the test."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.dsn(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test on both stores: for "postgres", ``VOICE_DATABASE_URL`` names a fresh database, so every app the
    test creates (and every ``voice serve`` it starts) keeps its history there; for "sqlite" it is unset and apps use
    their SQLite file. Opt in with ``pytestmark = pytest.mark.usefixtures("store_kind")``."""
    if request.param == "postgres":
        monkeypatch.setenv("VOICE_DATABASE_URL", request.getfixturevalue("postgres_dsn"))
    else:
        monkeypatch.delenv("VOICE_DATABASE_URL", raising=False)
    return str(request.param)
