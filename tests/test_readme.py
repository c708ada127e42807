"""The README's Python snippets are code a user can paste: each one runs and builds an app."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_its_agent_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet-{i}" for i in range(len(SNIPPETS))])
def test_a_readme_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # create_app's default voice.db goes here
    namespace: dict = {"__name__": "readme_snippet"}
    exec(compile(code, "README.md", "exec"), namespace)
    assert isinstance(namespace.get("app"), FastAPI)


async def test_the_readme_uvicorn_command_serves_a_call(tmp_path):
    """The README's uvicorn command line, as written, serves the first snippet: a call with audio in and a spoken
    reply out."""
    import asyncio
    import shlex
    import subprocess
    import sys

    from tests.harness import Client, free_port, stop_process

    command = re.search(r"`(uvicorn app:app --ws [^`]+)`", README.read_text())
    assert command is not None, "the README shows how to run under uvicorn"
    (tmp_path / "app.py").write_text(SNIPPETS[0])
    port = free_port()
    argv = shlex.split(command.group(1))
    proc = subprocess.Popen([sys.executable, "-m", *argv, "--port", str(port)], cwd=tmp_path)
    try:
        client = None
        for _ in range(300):  # the models load first
            try:
                client = await Client.connect(f"ws://127.0.0.1:{port}/agents/assistant/readme")
                break
            except OSError:
                assert proc.poll() is None, "uvicorn exited"
                await asyncio.sleep(0.1)
        assert client is not None
        await client.start_call()
        await client.wait_for("transcript_end", timeout=30)  # the greeting of on_call_start
        for _ in range(25):  # half a second of silence, frame by frame
            await client.send(bytes(640))
            await asyncio.sleep(0.02)
        mark = client.mark()
        await client.send({"type": "text_message", "text": "the weather"})
        end = await client.wait_for("transcript_end", timeout=30, after=mark)
        assert "You asked about the weather." in end["text"], end
        assert len(client.audio()) > 16_000  # more than half a second of speech
        await client.close()
    finally:
        stop_process(proc)
