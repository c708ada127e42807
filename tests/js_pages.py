"""Test pages that use npm code (Cloudflare's official voice client, React) in real Chromium.

The packages live in ``tests/js`` (``package.json`` + ``package-lock.json``; install them with
``npm ci --prefix tests/js``). Pages get them as ESM bundles that esbuild builds at test time into a temporary
directory (nothing bundled is committed), served by the voice app itself at ``/bundle/``, next to the web client at
``/`` and ``/client/``, so every page, module, worklet and WebSocket is same-origin.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from voice import create_app

ROOT = Path(__file__).resolve().parent.parent
JS_DIR = ROOT / "tests" / "js"
WEB_CLIENT = ROOT / "web_client"


def esbuild(entry: str, out: Path) -> Path:
    """Bundle the ES module source ``entry`` (bare imports resolve in ``tests/js/node_modules``, relative ones
    against ``tests/js``) into the browser ESM file ``out``."""
    exe = JS_DIR / "node_modules" / ".bin" / "esbuild"
    if not exe.exists():
        raise RuntimeError("the test JavaScript packages are missing: run `npm ci --prefix tests/js`")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Modules outside tests/js (web_client/react.js importing "react") find the packages through NODE_PATH.
    env = dict(os.environ, NODE_PATH=str(JS_DIR / "node_modules"))
    proc = subprocess.run(
        [str(exe), "--bundle", "--format=esm", "--platform=browser", "--sourcefile=entry.js", f"--outfile={out}"],
        input=entry, text=True, cwd=JS_DIR, env=env, capture_output=True, timeout=120, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"esbuild failed:\n{proc.stderr}")
    return out


def serve_pages(app: FastAPI, bundle_dir: Path) -> FastAPI:
    """Mount ``bundle_dir`` at ``/bundle`` and the web client at ``/client`` and ``/`` on a ``create_app`` app made
    without ``static_dir`` (the ``/`` mount must come last: it matches every path)."""
    app.mount("/bundle", StaticFiles(directory=str(bundle_dir), html=True), name="bundle")
    app.mount("/client", StaticFiles(directory=str(WEB_CLIENT)), name="client")
    app.mount("/", StaticFiles(directory=str(WEB_CLIENT), html=True), name="static")
    return app


def pages_app(agents: dict, bundle_dir: Path, **kwargs) -> FastAPI:
    """``create_app(agents, **kwargs)`` serving the test pages in ``bundle_dir``."""
    return serve_pages(create_app(agents, **kwargs), bundle_dir)
