"""A real HAProxy for tests, running ``deploy/haproxy.cfg`` itself: its global section is replaced (no daemon, no
chroot, a stats socket in a temporary directory), frontends bind a free loopback port, ``listen`` sections are
dropped, and each backend's servers become the given local ones, health-checked every 100 ms so a test need not
wait. Everything else (routing, hashing, health checks, timeouts) is the production file's."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.harness import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_CONFIG = ROOT / "deploy" / "haproxy.cfg"
PACKAGE = "haproxy"
#: quick health checks, but only answers count: a test process that stalls (a loaded machine) answers late, not "no"
CHECK = ["timeout check 5s", "default-server check inter 100ms fall 2 rise 1"]


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(header, body lines) per section; comments and blank lines dropped."""
    sections: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if not line[0].isspace():
            sections.append((line.strip(), []))
        elif sections:
            sections[-1][1].append(line.strip())
    return sections


def render_config(servers: dict[str, int], port: int, stats_socket: Path, source: Path = DEPLOY_CONFIG,
                  fast_checks: bool = True) -> str:
    """``source`` rewritten to run here: ``servers`` maps a server name to its port on 127.0.0.1. ``fast_checks``
    False keeps the production file's health-check timing (benchmarks: the checks' own cost as deployed)."""
    out = ["global", f"    stats socket {stats_socket} mode 600 level admin", "    maxconn 2000", ""]
    for header, body in _sections(source.read_text()):
        kind = header.split()[0]
        if kind in ("global", "listen"):
            continue
        lines = [line for line in body if not line.startswith(("bind ", "server ", "log "))]
        if kind == "frontend":
            lines.insert(0, f"bind 127.0.0.1:{port}")
        if kind == "backend":
            lines += (CHECK if fast_checks else []) + [f"server {name} 127.0.0.1:{p}" for name, p in servers.items()]
        out += [header] + [f"    {line}" for line in lines] + [""]
    return "\n".join(out)


class HAProxy:
    """``haproxy`` in the foreground in front of ``servers`` (name → local port); :attr:`url` is where it listens."""

    def __init__(self, servers: dict[str, int], source: Path = DEPLOY_CONFIG, fast_checks: bool = True) -> None:
        self.servers = servers
        self.source = source
        self.fast_checks = fast_checks
        self.port = free_port()
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> HAProxy:
        """Validate the generated configuration, start HAProxy, and wait until it accepts connections."""
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise RuntimeError(f"HAProxy is not installed: apt-get install -y {PACKAGE}  (make test installs it)")
        self.dir = Path(tempfile.mkdtemp(prefix="voice-haproxy-"))
        config = self.dir / "haproxy.cfg"
        socket_path = self.dir / "admin.sock"
        config.write_text(render_config(self.servers, self.port, socket_path, self.source, self.fast_checks))
        check = subprocess.run([binary, "-c", "-q", "-f", str(config)], check=False, capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejected the configuration:\n{check.stderr}\n{config.read_text()}")
        log = open(self.dir / "haproxy.log", "wb")  # noqa: SIM115 - HAProxy writes it until stop()
        self._proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    output = (self.dir / "haproxy.log").read_text(errors="replace")
                    self.stop()
                    raise RuntimeError(f"haproxy did not start:\n{output}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop HAProxy (closing every connection) and remove its files."""
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def command(self, line: str) -> str:
        """One command on the admin socket (``show stat``, ``show servers state``, ...)."""
        assert self.dir is not None, "not started"
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.dir / "admin.sock"))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self, backend: str) -> dict[str, dict[str, str]]:
        """``show stat`` of ``backend``'s servers, by server name: ``status`` (UP, DOWN, ...), ``stot`` (sessions
        served so far), ``scur`` (open now), ..."""
        text = self.command("show stat").lstrip("# ")
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")}

    def served(self, backend: str) -> dict[str, int]:
        """How many sessions each server of ``backend`` has been given."""
        return {name: int(row["stot"]) for name, row in self.stats(backend).items()}

    def status(self, backend: str) -> dict[str, str]:
        """UP / DOWN (and transitional states) of each server of ``backend``, as its health checks see it."""
        return {name: row["status"] for name, row in self.stats(backend).items()}

    async def wait_status(self, backend: str, server: str, status: str, timeout: float = 5.0) -> None:
        """Wait until the health checks put ``server`` in ``status`` (e.g. "DOWN" after its /readyz says 503)."""
        deadline = time.monotonic() + timeout
        while (now := self.status(backend).get(server)) != status:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{backend}/{server} is {now}, not {status}")
            await asyncio.sleep(0.02)
