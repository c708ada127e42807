"""Runs the browser client's JavaScript unit tests (web_client/test/*.test.js) with Node's built-in runner.

The client is plain ES modules with no npm dependencies, so nothing needs installing: `node --test` is enough.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_web_client_js_unit_tests() -> None:
    node = shutil.which("node")
    assert node, "node (>= 20) is required to run the web client tests"
    proc = subprocess.run(
        [node, "--test", "web_client/test/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"node --test failed:\n{output[-8000:]}"
    assert "# fail 0" in output, output[-4000:]
