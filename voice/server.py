"""The HTTP/WebSocket server: :func:`create_app` (a FastAPI app) and :class:`VoiceServer` (a router to mount)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from . import auth, protocol
from .agent import BaseAgent
from .auth import Authorizer
from .config import Settings
from .engine import Runtime
from .providers.base import Transcriber, TTSProvider
from .transports import Gate, Refusal, serve_websocket
from .transports.monitoring import mount_metrics
from .transports.webrtc import mount_webrtc

log = logging.getLogger("voice")


_frozen = False


def _freeze_startup_objects() -> None:
    """Once per process, after start-up: what start-up made (modules, models, the app) lives as long as the process,
    so move it out of the cyclic collector's sight. A full collection under load then scans only the calls' objects
    (300 calls on the bench: the longest full collection, a pause of every call's audio, went from 119 to ~45 ms)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


MAX_HISTORY_LIMIT = 1_000_000  # ?limit= beyond this is refused (400), never passed to the store


class VoiceServer:
    """The routes and the runtime behind them. Mount ``server.router`` in your own FastAPI app and enter
    ``server.lifespan(app)`` from your app's lifespan, or use :func:`create_app`."""

    def __init__(
        self,
        agents: dict[str, type[BaseAgent]],
        *,
        transcriber: Transcriber | None = None,
        tts: TTSProvider | None = None,
        settings: Settings | None = None,
        authorize: Authorizer | None = None,
        warm_up: bool = True,
        **overrides: Any,
    ) -> None:
        self.settings = settings or Settings.from_env(**overrides)
        self.runtime = Runtime(agents, self.settings, transcriber=transcriber, tts=tts)
        #: admission for every entry point; ``authorize`` None: VOICE_API_TOKEN / VOICE_TOKEN_SECRET, else open
        self.gate = Gate(self.settings, authorize if authorize is not None else auth.from_env())
        self.warm_up = warm_up
        self.router = APIRouter()
        self._add_routes()

    @asynccontextmanager
    async def lifespan(self, app: FastAPI | None = None) -> AsyncIterator[None]:
        """Run the runtime for the app's lifetime."""
        await self.runtime.start(warm_up=self.warm_up)
        _freeze_startup_objects()
        try:
            yield
        finally:
            await self.runtime.stop()

    async def drain(self) -> None:
        """Graceful shutdown: refuse new connections, let replies in flight finish and play out (up to
        ``drain_seconds``), then tell every client (``error`` ``server_shutdown``, close 1001) so it reconnects."""
        self.gate.draining = True
        deadline = time.monotonic() + self.settings.drain_seconds
        while time.monotonic() < deadline:
            if not any(c.turns.replying for c in self.runtime.live_calls()):  # replies generated and played out
                break
            await asyncio.sleep(0.05)
        calls = self.runtime.live_calls()
        for call in calls:
            call.send_error("the server is shutting down; reconnect", "server_shutdown")
        await asyncio.gather(*(c.close_connection(protocol.CLOSE_GOING_AWAY, "server shutting down") for c in calls))

    def _add_routes(self) -> None:
        runtime = self.runtime

        gate = self.gate

        @self.router.websocket("/agents/{agent}/{instance}")
        async def agent_socket(websocket: WebSocket, agent: str, instance: str) -> None:
            try:
                principal, client = await gate.admit(websocket, agent, instance)
            except Refusal as refusal:
                await deny(websocket, refusal)
                return
            try:
                await serve_websocket(websocket, runtime, agent, instance, principal=principal)
            finally:
                gate.leave(client)

        @self.router.get("/agents/{agent}/{instance}/messages")
        async def agent_messages(
            request: Request, agent: str, instance: str, limit: int | None = None
        ) -> dict[str, Any]:
            try:
                await gate.check(request, agent, instance)
            except Refusal as refusal:
                raise HTTPException(refusal.status, refusal.message) from None
            key = runtime.resolve(agent)
            if key is None:
                raise HTTPException(404, f"unknown agent {agent!r}")
            if limit is not None and not 0 <= limit <= MAX_HISTORY_LIMIT:
                raise HTTPException(400, f"limit must be between 0 and {MAX_HISTORY_LIMIT}")
            live = runtime.instance(key, instance)
            if live is not None:
                await live._transcript.flush()  # what this process has said is in the answer
            messages = await runtime.store.messages(key, instance, limit)
            return {"messages": [m.to_json() for m in messages]}

        @self.router.get("/readyz")
        async def ready() -> JSONResponse:
            """Readiness, for a load balancer: 200 while this process takes new calls; 503 while it drains or is
            near ``max_connections`` (the calls it holds go on)."""
            reason = "draining" if gate.draining else None if gate.ready else "near capacity"
            body = {"ready": reason is None, "connections": gate.active} | ({"reason": reason} if reason else {})
            return JSONResponse(body, status_code=200 if reason is None else 503)

        @self.router.get("/healthz")
        async def health() -> dict[str, Any]:
            """Liveness: 200 while the process runs (draining or not)."""
            return {
                "ok": not gate.draining,
                "agents": sorted(runtime.agents),
                "connections": gate.active,
                "tasks": len(asyncio.all_tasks()),  # for leak checks (bench/soak.py)
            }


async def deny(websocket: WebSocket, refusal: Refusal) -> None:
    """Refuse a WebSocket before the upgrade: an HTTP error response where the server supports it, else a 403."""
    log.info("refused a connection: %s %s", refusal.status, refusal.message)
    try:
        await websocket.send_denial_response(JSONResponse({"error": refusal.message}, status_code=refusal.status))
    except RuntimeError:
        await websocket.close(code=1008, reason=refusal.message)


def create_app(
    agents: dict[str, type[BaseAgent]],
    *,
    transcriber: Transcriber | None = None,
    tts: TTSProvider | None = None,
    settings: Settings | None = None,
    authorize: Authorizer | None = None,
    static_dir: str | Path | None = None,
    webrtc: bool = True,
    warm_up: bool = True,
    metrics: bool | None = None,
    **overrides,
) -> FastAPI:
    """A FastAPI app serving ``agents`` (name → class) at ``/agents/{name}/{instance}``.

    ``transcriber``/``tts`` are the defaults for agents that do not set their own (None: the offline Whisper and
    Piper providers, or those named by ``VOICE_STT``/``VOICE_TTS``). ``authorize(conn, agent, instance)`` guards
    every entry point (see :mod:`voice.auth`). Keyword ``overrides`` set :class:`Settings` fields
    (e.g. ``db_path=...``). ``static_dir`` is served at ``/``. ``webrtc``: mount the WebRTC signaling route with
    its environment defaults (call :func:`voice.transport_webrtc.mount_webrtc` yourself for other options).
    ``metrics``: serve Prometheus metrics at ``/metrics`` (None: ``VOICE_METRICS``, else if ``voice[metrics]`` is
    installed; True without it raises :class:`~voice.transports.monitoring.MetricsUnavailable`).
    """
    server = VoiceServer(
        agents, transcriber=transcriber, tts=tts, settings=settings, authorize=authorize, warm_up=warm_up, **overrides
    )
    app = FastAPI(title="voice", lifespan=server.lifespan)
    if webrtc:
        mount_webrtc(server)  # aiortc is imported lazily; without it the route answers 501
    mount_metrics(server, enabled=metrics)  # without prometheus-client: 501, or an error if asked for
    app.include_router(server.router)
    app.state.voice = server
    if static_dir is not None:
        app.mount("/client", StaticFiles(directory=str(static_dir)), name="client")
        app.mount("/", StaticFiles(directory=str(static_dir), html=True), name="static")
    return app
