"""Several ``voice serve`` processes on one PostgreSQL database behind the real HAProxy (``deploy/haproxy.cfg``), for
tests and benchmarks: each process runs ``tests/cluster_app.py`` (or another app) in its own subprocess, can be
killed (``SIGKILL``) or drained (``SIGTERM``), and restarted on the same port."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.haproxy import HAProxy
from tests.harness import free_port

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.cluster_app:app"


class ServeProcess:
    """``voice serve APP --port PORT`` with ``env`` added to ours; its output goes to ``log``."""

    def __init__(self, name: str, env: dict[str, str], log: Path, app: str = APP, port: int | None = None,
                 cpus: str | None = None) -> None:
        self.name = name
        self.env = env
        self.log = log
        self.app = app
        self.port = port or free_port()
        self.cpus = cpus  # taskset CPU list, for benchmarks
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        """Start the process (returns at once; :meth:`wait_ready` waits for it)."""
        command = [sys.executable, "-m", "voice.cli", "serve", self.app, "--port", str(self.port)]
        if self.cpus is not None:
            command = ["taskset", "-c", self.cpus, *command]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=os.environ | self.env | {"PYTHONUNBUFFERED": "1"},
                                         stdout=log, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``/readyz`` answers 200."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while True:
                if not self.alive:
                    raise RuntimeError(f"{self.name} exited: {self.tail()}")
                try:
                    if (await http.get(f"{self.url}/readyz", timeout=1.0)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} did not become ready: {self.tail()}")
                await asyncio.sleep(0.05)

    def signal(self, sig: int) -> None:
        """Send ``sig`` (SIGKILL: it dies; SIGTERM: it drains, then exits)."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 15.0) -> int:
        """Its exit status."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not exit: {self.tail()}")
            await asyncio.sleep(0.02)
        return self.proc.returncode

    def stop(self) -> None:
        """Kill it if it still runs."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class Cluster:
    """``size`` processes named voice1… on ``database_url``, and HAProxy in front of them (not started until
    :meth:`start`). ``env`` is added to every process's environment; ``public`` (the balancer's URL) is known before
    the processes start, for settings that need it (``VOICE_PUBLIC_URL``)."""

    def __init__(self, database_url: str, workdir: Path, size: int = 3, env: dict[str, str] | None = None,
                 app: str = APP, cpus: str | None = None, fast_checks: bool = True) -> None:
        self.procs = {
            f"voice{i}": ServeProcess(f"voice{i}", {}, workdir / f"voice{i}.log", app=app, cpus=cpus)
            for i in range(1, size + 1)
        }
        self.proxy = HAProxy({name: p.port for name, p in self.procs.items()}, fast_checks=fast_checks)
        for proc in self.procs.values():
            proc.env = {"VOICE_DATABASE_URL": database_url, "VOICE_DB": str(workdir / "unused.db")} | (env or {})

    @property
    def public(self) -> str:
        return self.proxy.url

    def env_all(self, env: dict[str, str]) -> None:
        """Add ``env`` to every process's environment (from its next start)."""
        for proc in self.procs.values():
            proc.env = proc.env | env

    async def start(self) -> Cluster:
        for proc in self.procs.values():
            proc.spawn()
        await asyncio.gather(*(p.wait_ready() for p in self.procs.values()))
        self.proxy.start()
        await self.wait_up()
        return self

    async def ensure(self) -> None:
        """Restart every process that is not running, and wait until HAProxy sends it calls again."""
        dead = [p for p in self.procs.values() if not p.alive]
        for proc in dead:
            proc.spawn()
        await asyncio.gather(*(p.wait_ready() for p in dead))
        await self.wait_up()

    async def wait_up(self, timeout: float = 10.0) -> None:
        for backend in ("voice_instances", "voice_twilio"):
            for name in self.procs:
                await self.proxy.wait_status(backend, name, "UP", timeout)

    def by_pid(self, pid: int) -> ServeProcess:
        return next(p for p in self.procs.values() if p.pid == pid)

    async def serving(self, instance: str, agent: str = "worker") -> ServeProcess:
        """The process the balancer sends ``instance`` to now."""
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{self.public}/agents/{agent}/{instance}/whoami")
        response.raise_for_status()
        return self.by_pid(response.json()["pid"])

    def stop(self) -> None:
        self.proxy.stop()
        for proc in self.procs.values():
            proc.stop()


def sigterm(proc: ServeProcess) -> None:
    """Drain ``proc``, as a deploy does."""
    proc.signal(signal.SIGTERM)


def sigkill(proc: ServeProcess) -> None:
    """Kill ``proc`` outright, as a crash does."""
    proc.signal(signal.SIGKILL)
