"""The ``voice`` command: ``voice serve`` runs a server, ``voice call`` talks to one from a WAV file."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn

from .audio import ENGINE_RATE, resample, to_mono_int16
from .transports.uvicorn_ws import VoiceWebSocketProtocol

WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client"

#: after the drain, how long uvicorn waits for connection handlers to finish before it cancels them
SHUTDOWN_GRACE_SECONDS = 10


# --- voice serve -----------------------------------------------------------------------------------------------


def build_demo_app(
    stt: str | None = None,
    tts: str | None = None,
    db: str | None = None,
    static: Path | None = None,
    llm_url: str | None = None,
    llm_model: str | None = None,
):
    """The demo: ``assistant`` (an LLM if one is given) and ``dictation`` on the chosen (default: offline)
    providers."""
    from .demo import IDLE_SECONDS, demo_agents
    from .providers.factory import make_transcriber, make_tts
    from .server import create_app

    agents = demo_agents(llm_url, llm_model)
    app = create_app(
        agents,
        transcriber=make_transcriber(stt),
        tts=make_tts(tts),
        static_dir=static if static and static.is_dir() else None,
        db_path=db,
        # on in the demo unless set (VOICE_USER_IDLE_SECONDS=off turns it off)
        user_idle_seconds=None if os.environ.get("VOICE_USER_IDLE_SECONDS") else IDLE_SECONDS,
    )
    _mount_telephony(app)
    return app


def _mount_telephony(app: Any) -> None:
    """Twilio's routes when ``TWILIO_AUTH_TOKEN`` is set (its package must then be installed)."""
    if not os.environ.get("TWILIO_AUTH_TOKEN"):
        return
    from .providers.factory import require_extra

    require_extra("TWILIO_AUTH_TOKEN (phone calls)", "twilio", "twilio")
    from adapters.twilio import maybe_mount_twilio

    maybe_mount_twilio(app)


def serve(args: argparse.Namespace) -> int:
    """``voice serve``: the demo or an app of yours, until SIGTERM/SIGINT (which drains calls)."""
    from .history import StoreConfigError
    from .llm import MissingOpenAI
    from .providers.factory import ProviderConfigError
    from .transports.monitoring import MetricsUnavailable

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.app:
            module_name, _, attr = args.app.partition(":")
            sys.path.insert(0, os.getcwd())
            app = getattr(importlib.import_module(module_name), attr or "app")
        else:
            app = build_demo_app(args.stt, args.tts, args.db, WEB_CLIENT, args.llm_url, args.llm_model)
    except (ProviderConfigError, StoreConfigError, MetricsUnavailable, MissingOpenAI) as exc:
        print(f"voice serve: {exc}", file=sys.stderr)
        return 2
    voice_server = getattr(getattr(app, "state", None), "voice", None)
    if voice_server is not None and voice_server.gate.authorize is None:
        if args.host in ("127.0.0.1", "localhost", "::1"):
            print("voice: no authorization configured (fine for a local demo; see docs/security.md)", flush=True)
        else:
            logging.getLogger("voice").warning(
                "\n%s\nLISTENING ON %s WITHOUT AUTHORIZATION: anyone who can reach it can open calls and read "
                "every conversation. Set VOICE_API_TOKEN or VOICE_TOKEN_SECRET (docs/security.md).\n%s",
                "!" * 78, args.host, "!" * 78,
            )
    print(f"voice: serving on http://{args.host}:{args.port}  (agents at ws://{args.host}:{args.port}/agents/…)",
          flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", ws_max_size=1 << 20,
                            ws=VoiceWebSocketProtocol, timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)
    DrainingServer(config, voice_server).run()
    return 0


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, lets voice drain its calls before uvicorn drops the remaining sockets."""

    def __init__(self, config: uvicorn.Config, voice_server) -> None:
        super().__init__(config)
        self.voice_server = voice_server

    async def shutdown(self, sockets=None) -> None:
        """Drain the calls, then let uvicorn stop."""
        if self.voice_server is not None:
            await self.voice_server.drain()
        await super().shutdown(sockets)


# --- voice call ------------------------------------------------------------------------------------------------


def read_wav(path: str) -> bytes:
    """Any PCM WAV → 16 kHz mono int16."""
    with wave.open(path, "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    dtype: str | None = {1: "u1", 2: "<i2", 4: "<i4"}.get(width)
    if dtype is None:
        raise SystemExit(f"voice call: unsupported WAV sample width {width * 8} bits")
    samples = np.frombuffer(raw, dtype=dtype).reshape(-1, channels)
    if width == 1:
        samples = (samples.astype(np.int16) - 128) << 8
    elif width == 4:
        samples = (samples >> 16).astype(np.int16)
    return resample(to_mono_int16(samples).tobytes(), rate, ENGINE_RATE)


def write_wav(path: str, pcm: bytes, rate: int) -> None:
    """16-bit mono PCM to a WAV file."""
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def ws_url(url: str) -> str:
    """An http(s) URL as the ws(s) URL of the same place."""
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    return url


async def call(url: str, pcm: bytes, *, realtime: bool = True, wait: float = 15.0, quiet: bool = False) -> dict:
    """Stream ``pcm`` (16 kHz mono int16) to an agent and collect what comes back."""
    import websockets

    out: dict = {"transcripts": [], "replies": [], "metrics": [], "errors": [], "audio": b"", "sample_rate": 16000}
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    async with websockets.connect(ws_url(url), max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "protocol_version": 1}))
        await ws.send(json.dumps({"type": "start_call"}))
        listening = asyncio.Event()
        last_activity = [time.monotonic()]
        busy = [False]
        audio = bytearray()

        async def reader() -> None:
            async for raw in ws:
                last_activity[0] = time.monotonic()
                if isinstance(raw, bytes):
                    audio.extend(raw)
                    continue
                m = json.loads(raw)
                kind = m.get("type")
                if kind == "audio_config":
                    out["sample_rate"] = m.get("sampleRate", 16000)
                elif kind == "status":
                    busy[0] = m["status"] in ("thinking", "speaking")
                    if m["status"] == "listening":
                        listening.set()
                elif kind == "transcript_interim" and m.get("text"):
                    say(f"  … {m['text']}")
                elif kind == "transcript":
                    out["transcripts" if m["role"] == "user" else "replies"].append(m["text"])
                    say(f"{m['role']}: {m['text']}")
                elif kind == "transcript_end":
                    out["replies"].append(m["text"])
                    say(f"agent: {m['text']}")
                elif kind == "metrics":
                    out["metrics"].append(m)
                    say("metrics: " + ", ".join(f"{k}={v}" for k, v in m.items() if k != "type"))
                elif kind == "error":
                    out["errors"].append(m)
                    say(f"error: {m.get('message')}")

        read_task = asyncio.create_task(reader())
        await asyncio.wait_for(listening.wait(), 30)
        frame = ENGINE_RATE * 20 // 1000 * 2
        t0 = time.monotonic()
        silence = bytes(frame)
        k = 0

        async def send_frame(data: bytes) -> None:
            nonlocal k
            if realtime:
                await asyncio.sleep(max(0.0, t0 + k * 0.02 - time.monotonic()))
            await ws.send(data)
            k += 1

        for i in range(0, len(pcm), frame):
            await send_frame(pcm[i : i + frame])
        # keep the line open with silence (as a microphone would) until the replies are done
        sent_at = time.monotonic()
        last_activity[0] = sent_at
        while time.monotonic() - sent_at < wait:
            await send_frame(silence)
            idle = time.monotonic() - last_activity[0]
            if out["metrics"] and not busy[0] and idle > 1.5:
                break
        await ws.send(json.dumps({"type": "end_call"}))
        await asyncio.sleep(0.1)
        read_task.cancel()
        out["audio"] = bytes(audio)
    return out


def call_command(args: argparse.Namespace) -> int:
    """``voice call``: stream a WAV file to an agent, print what happens, save the reply audio."""
    pcm = read_wav(args.audio)
    result = asyncio.run(call(args.url, pcm, realtime=not args.fast, wait=args.wait))
    if args.out:
        write_wav(args.out, result["audio"], result["sample_rate"])
        print(f"reply audio: {args.out} ({len(result['audio']) / 2 / result['sample_rate']:.2f} s)")
    return 0 if result["transcripts"] and not result["errors"] else 1


def main(argv: list[str] | None = None) -> int:
    """The ``voice`` command."""
    ap = argparse.ArgumentParser(prog="voice", description="Real-time voice for agents.")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run a server (the built-in demo unless an app is given)")
    s.add_argument("app", nargs="?", help="module:app of your own FastAPI app (default: the demo)")
    s.add_argument("--host", default=os.environ.get("VOICE_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(os.environ.get("VOICE_PORT", "8000")))
    s.add_argument("--stt", choices=["local", "flux", "nova-3"], default=None, help="speech-to-text (default: local)")
    s.add_argument("--tts", choices=["local", "aura"], default=None, help="text-to-speech (default: local)")
    s.add_argument("--db", default=None, help="SQLite file for history (default: VOICE_DB or ./voice.db)")
    s.add_argument("--llm-url", default=None, help="OpenAI-compatible base URL: the assistant answers with this LLM "
                   "(default: VOICE_LLM_URL; e.g. http://127.0.0.1:11434/v1)")
    s.add_argument("--llm-model", default=None, help="the LLM's model name (default: VOICE_LLM_MODEL)")
    s.set_defaults(func=serve)
    c = sub.add_parser("call", help="stream a WAV file to an agent and print what happens")
    c.add_argument("url", help="e.g. ws://127.0.0.1:8000/agents/assistant/me")
    c.add_argument("audio", help="a WAV file (any rate and channels)")
    c.add_argument("--out", help="write the agent's reply audio to this WAV file")
    c.add_argument("--fast", action="store_true", help="send as fast as possible instead of in real time")
    c.add_argument("--wait", type=float, default=15.0, help="seconds to wait for replies after the audio")
    c.set_defaults(func=call_command)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
