"""Helpers for tests in real Chromium (Debian's, driven by Playwright) against `voice serve` with the real models."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import wave
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.harness import free_port

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
BASE_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def write_wav(path: Path, pcm: bytes, rate: int = 16_000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


class ServeProcess:
    """`voice serve` (the demo on the offline models) in a subprocess, restartable on the same port."""

    def __init__(self, db: Path, port: int | None = None) -> None:
        self.db = db
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = db.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServeProcess:
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voice.cli", "serve", "--port", str(self.port), "--db", str(self.db)],
            cwd=ROOT, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"voice serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("voice serve did not become ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def messages(self, agent: str, instance: str) -> list[dict]:
        return httpx.get(f"{self.url}/agents/{agent}/{instance}/messages").json()["messages"]


@asynccontextmanager
async def chromium(fake_audio: Path | None = None, allow_microphone: bool = True):
    """A Chromium page; its microphone plays ``fake_audio`` (looped), or microphone access is denied."""
    from playwright.async_api import async_playwright

    flags = list(BASE_FLAGS)
    if allow_microphone:
        flags += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
        if fake_audio is not None:
            flags.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    else:
        flags += ["--use-fake-device-for-media-stream", "--deny-permission-prompts"]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        try:
            page = await browser.new_page()
            page.console_errors = []  # type: ignore[attr-defined]
            page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
            page.on("pageerror", lambda e: page.console_errors.append(str(e)))
            yield page
        finally:
            await browser.close()
