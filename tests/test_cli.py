"""`voice call` end to end against `voice serve` in a subprocess, on the real models."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.browser import ServeProcess, write_wav
from tests.speech import piper_speech, wer


def test_voice_call_cli_against_voice_serve(tmp_path):
    serve = ServeProcess(tmp_path / "cli.db").start()
    try:
        question = "what time does the museum open"
        wav = write_wav(tmp_path / "q.wav", piper_speech(question, rate=22050), rate=22050)
        out = tmp_path / "reply.wav"
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        result = subprocess.run(
            [sys.executable, "-m", "voice.cli", "call", f"{serve.url}/agents/assistant/cli", str(wav), "--out", str(out)],
            capture_output=True, text=True, timeout=90, env=env,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        user_line = next(line for line in lines if line.startswith("user: "))
        assert wer(question, user_line[len("user: "):]) <= 0.15, result.stdout
        assert any(line.startswith("agent: You said:") for line in lines), result.stdout
        assert any(line.startswith("metrics: ") for line in lines), result.stdout
        assert out.exists() and out.stat().st_size > 16000
    finally:
        serve.stop()


def test_voice_serve_with_a_cloud_provider_and_no_key_fails_clearly():
    env = {k: v for k, v in os.environ.items() if k != "DEEPGRAM_API_KEY"}
    result = subprocess.run([sys.executable, "-m", "voice.cli", "serve", "--stt", "flux", "--port", "1"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "DEEPGRAM_API_KEY" in result.stderr
