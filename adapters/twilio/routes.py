"""HTTP routes for Twilio: the voice webhook (answers with ``<Connect><Stream>`` TwiML, then a ``<Redirect>`` back to
itself so a call whose stream a draining or dead process closed re-enters on another) and the Media Stream WebSocket.
Both check Twilio's signature before doing anything else."""

from __future__ import annotations

import logging
import os
import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response, WebSocket
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from voice.transports import Refusal, include_first, mount_target

from .rest import API_URL
from .signature import call_token, http_url, parse_form, stream_url, valid_signature
from .stream import StreamConfig, serve_twilio_stream

log = logging.getLogger("voice.twilio")

INSTANCE_FROM = ("call_sid", "caller")
MAX_WEBHOOK_BYTES = 64 * 1024
_PHONE = re.compile(r"^\+?[0-9]{5,16}$")


def mount_twilio(
    server: Any,
    *,
    agent: str = "assistant",
    public_url: str | None = None,
    auth_token: str | None = None,
    instance_from: str = "call_sid",
    insecure_dev: bool = False,
    prefix: str = "/twilio",
    lead_seconds: float = 0.16,
    api_url: str | None = None,
) -> bool:
    """Add ``POST {prefix}/voice`` (the webhook to configure on your Twilio number) and ``WS {prefix}/media``.

    ``server``: a :class:`~voice.server.VoiceServer` — call this *before* including ``server.router`` in your app —
    or the app returned by :func:`voice.create_app` (routes are added to the app directly).
    ``agent``: the agent every call talks to. ``public_url``: the externally visible base URL, e.g.
    ``https://voice.example.com`` (default ``VOICE_PUBLIC_URL``); webhook signatures are checked against it and the
    stream URL is built from it (https→wss), never from request headers. ``auth_token``: the account's Auth Token
    (default ``TWILIO_AUTH_TOKEN``). ``instance_from``: which agent instance (history) a call gets —
    ``"call_sid"`` (a fresh one per call) or ``"caller"`` (one per caller number; withheld numbers get a fresh one).
    Without an auth token nothing is mounted unless ``insecure_dev=True`` (no signature checks: local testing only).
    ``prefix``: where the two routes live. ``lead_seconds``: agent audio kept queued at Twilio (barge-in drops at
    most this much; more tolerates more network jitter). ``api_url``: Twilio's REST API (default ``TWILIO_API_URL``,
    else https://api.twilio.com), where ``hangup()`` ends a call: with an auth token the TwiML redirects back to the
    webhook after the stream, so a call whose process drains or dies goes on on another process, and closing the
    stream no longer hangs up by itself. Returns whether the routes were mounted.
    """
    voice_server, router = mount_target(server, "mount_twilio")
    public_url = public_url or os.environ.get("VOICE_PUBLIC_URL") or None
    auth_token = auth_token or os.environ.get("TWILIO_AUTH_TOKEN") or None
    if instance_from not in INSTANCE_FROM:
        raise ValueError(f"instance_from must be one of {INSTANCE_FROM}, got {instance_from!r}")
    if voice_server.runtime.resolve(agent) is None:
        known = ", ".join(sorted(voice_server.runtime.agents))
        raise ValueError(f"mount_twilio: unknown agent {agent!r} (known: {known})")
    if not auth_token and not insecure_dev:
        log.warning("Twilio routes NOT mounted: no auth token (set TWILIO_AUTH_TOKEN, or insecure_dev=True locally)")
        return False
    if not public_url:
        raise ValueError("mount_twilio needs public_url or VOICE_PUBLIC_URL, e.g. https://voice.example.com")
    prefix = "/" + prefix.strip("/")
    voice_path, media_path = f"{prefix}/voice", f"{prefix}/media"
    ws_url = stream_url(public_url, media_path)  # also validates public_url
    if not auth_token:
        log.warning(
            "\n%s\n!! INSECURE: Twilio routes mounted WITHOUT signature checks (insecure_dev=True).\n"
            "!! Anyone who can reach %s can place calls to agent %r. Never use this in production.\n%s",
            "!" * 100,
            public_url,
            agent,
            "!" * 100,
        )
    elif not ws_url.startswith("wss://"):
        log.warning("VOICE_PUBLIC_URL %s is not https: Twilio only connects to wss:// stream URLs", public_url)
    # the <Redirect> is signed like the rest; without a token there is neither a signature nor a REST API to hang up
    api_url = (api_url or os.environ.get("TWILIO_API_URL") or API_URL) if auth_token else None
    config = StreamConfig(agent=agent, auth_token=auth_token, lead=lead_seconds, api_url=api_url)
    runtime, gate = voice_server.runtime, voice_server.gate
    routes = APIRouter()

    @routes.post(voice_path)
    async def twilio_voice(request: Request) -> Response:
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > MAX_WEBHOOK_BYTES:
                return Response("request too large", status_code=413)
        params = parse_form(body)
        if auth_token:
            url = http_url(public_url, request.url.path, request.url.query)
            if not valid_signature(auth_token, url, params, request.headers.get("x-twilio-signature")):
                log.warning("Twilio webhook with a bad or missing signature refused (signed URL %s)", url)
                return Response("invalid signature", status_code=403)
        call_sid = params.get("CallSid")
        caller = params.get("From")
        # our own <Redirect> names the instance (and is signed): the call goes on with the history it had
        resumed = request.query_params.get("instance")
        instance = resumed or (caller if instance_from == "caller" and _PHONE.match(caller) else call_sid)
        if not call_sid or not instance:
            return Response("missing CallSid", status_code=400)
        parameters = {"agent": agent, "instance": instance, "from": caller, "to": params.get("To"),
                      "resumed": "1" if resumed else None}
        if auth_token:
            parameters["token"] = call_token(auth_token, agent, instance, call_sid)
        again = http_url(public_url, voice_path, urlencode({"instance": instance})) if api_url else None
        return Response(twiml(ws_url, parameters, redirect=again), media_type="text/xml")

    @routes.websocket(media_path)
    async def twilio_media(websocket: WebSocket) -> None:
        if auth_token and not valid_signature(auth_token, ws_url, {}, websocket.headers.get("x-twilio-signature")):
            log.warning("Twilio media stream with a bad or missing signature refused")
            await websocket.close(code=1008)  # before accept: the upgrade is answered with HTTP 403
            return
        try:
            gate.take()  # a draining or full process refuses (503): the balancer retries elsewhere
        except Refusal as refusal:
            log.info("Twilio media stream refused: %s", refusal.message)
            try:
                await websocket.send_denial_response(Response(refusal.message, status_code=refusal.status))
            except RuntimeError:  # a server without the denial extension: a plain refusal
                await websocket.close(code=1013)
            return
        try:
            await websocket.accept()
            await serve_twilio_stream(websocket, runtime, config)
        finally:
            gate.leave(None)

    include_first(router, routes)  # before any catch-all mount (create_app's static files at "/")
    log.info("Twilio: webhook %s, stream %s, agent %r", http_url(public_url, voice_path), ws_url, agent)
    return True


def twiml(ws_url: str, parameters: dict[str, Any], redirect: str | None = None) -> str:
    """``<Response><Connect><Stream url=…>`` with a ``<Parameter>`` per non-empty entry, then ``<Redirect>`` to
    ``redirect`` if given: Twilio runs it when the stream is closed while the call goes on."""
    stream = Stream(url=ws_url)
    for name, value in parameters.items():
        if value:
            stream.parameter(name=name, value=str(value)[:200])
    connect = Connect()
    connect.append(stream)
    response = VoiceResponse()
    response.append(connect)
    if redirect:
        response.redirect(redirect, method="POST")
    return str(response)


def maybe_mount_twilio(server: Any, agent: str | None = None) -> bool:
    """For ``voice serve``: mount the Twilio routes when ``TWILIO_AUTH_TOKEN`` is set (``VOICE_PUBLIC_URL`` is then
    required). The agent is ``agent``, else ``VOICE_TWILIO_AGENT``, else the only agent served, else "assistant";
    ``VOICE_TWILIO_INSTANCE`` may be ``call_sid`` (default) or ``caller``."""
    if not os.environ.get("TWILIO_AUTH_TOKEN"):
        return False
    voice_server, _ = mount_target(server, "mount_twilio")
    names = list(voice_server.runtime.agents)
    name = agent or os.environ.get("VOICE_TWILIO_AGENT") or (names[0] if len(names) == 1 else "assistant")
    return mount_twilio(server, agent=name, instance_from=os.environ.get("VOICE_TWILIO_INSTANCE") or "call_sid")
