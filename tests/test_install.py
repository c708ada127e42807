"""A setting that needs a missing optional package stops start-up with one line naming the extra; nothing is
skipped silently. Each case runs `voice serve` in a subprocess with the package blocked from import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = [
    (["--stt", "flux"], {"DEEPGRAM_API_KEY": "dg-test"}, ["deepgram"], "voice[deepgram]"),
    (["--stt", "nova-3"], {"DEEPGRAM_API_KEY": "dg-test"}, ["deepgram"], "voice[deepgram]"),
    (["--tts", "aura"], {"DEEPGRAM_API_KEY": "dg-test"}, ["deepgram"], "voice[deepgram]"),
    ([], {"TWILIO_AUTH_TOKEN": "tw-test", "VOICE_PUBLIC_URL": "https://voice.example.com"}, ["twilio"],
     "voice[twilio]"),
    ([], {}, ["faster_whisper"], "voice[local]"),
]


@pytest.mark.parametrize("args,env,blocked,extra", CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_setting_without_its_package_stops_start_up_with_one_line(tmp_path, args, env, blocked, extra):
    code = (
        "import sys; "
        + "".join(f"sys.modules[{m!r}] = None; " for m in blocked)
        + f"from voice.cli import main; sys.exit(main(['serve', '--port', '1', '--db', {str(tmp_path / 'v.db')!r}, "
        + ", ".join(repr(a) for a in args) + "]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", **env))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and extra in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
