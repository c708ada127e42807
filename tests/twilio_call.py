"""The rest of Twilio around the Media Stream simulator: a whole call that follows its TwiML, and the REST API's call
resource, so a test can see a call move between processes and an agent hang one up.

:class:`PhoneCall` does what Twilio does with one inbound call: POST the voice webhook (signed over the URL and the
form, as Twilio signs), run the TwiML it gets — ``<Connect><Stream>`` opens a :class:`~tests.twilio_sim.TwilioSim`
*leg* with the ``<Parameter>``s; when the app closes that stream while the call is still up, the ``<Redirect>``
after ``</Connect>`` is POSTed (signed, the same call parameters) and its TwiML runs in turn; no TwiML left, the
call ends. :class:`TwilioAPI` is ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with HTTP basic auth
and ``Status=completed``: it ends the call as Twilio does (``stop`` on the stream, then the socket closes; no
``<Redirect>`` runs for a call that has ended).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import httpx
from twilio.request_validator import RequestValidator

from tests.harness import LiveServer
from tests.twilio_sim import TwilioSim, silence

ACCOUNT_SID = "AC" + "0" * 32


@dataclass
class TwiML:
    """What one TwiML document asks for (the two verbs our webhook uses)."""

    stream_url: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    redirect: str | None = None
    redirect_method: str = "POST"

    @classmethod
    def parse(cls, text: str) -> TwiML:
        root = ET.fromstring(text)
        assert root.tag == "Response", text
        twiml = cls()
        stream = root.find("./Connect/Stream")
        if stream is not None:
            twiml.stream_url = stream.get("url")
            twiml.parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        redirect = root.find("./Redirect")
        if redirect is not None:
            twiml.redirect = (redirect.text or "").strip()
            twiml.redirect_method = redirect.get("method", "POST")
        return twiml


class PhoneCall:
    """One inbound call to ``webhook`` (the number's voice URL), signed with ``token``."""

    def __init__(self, webhook: str, token: str, *, caller: str = "+14155550100", to: str = "+18005550199",
                 call_sid: str | None = None) -> None:
        self.webhook = webhook
        self.token = token
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.form = {"AccountSid": ACCOUNT_SID, "CallSid": self.call_sid, "From": caller, "To": to,
                     "CallStatus": "in-progress", "Direction": "inbound"}
        self.legs: list[TwilioSim] = []
        self.twiml: list[TwiML] = []  # every document the call ran, in order
        self.ended = asyncio.Event()
        self.completed_by_api = False
        self._runner: asyncio.Task | None = None
        self._new_leg = asyncio.Event()

    @property
    def leg(self) -> TwilioSim:
        """The stream in progress (the last one opened)."""
        return self.legs[-1]

    async def dial(self) -> PhoneCall:
        """The webhook, then the first stream; the call goes on by itself from there."""
        await self._run(await self._fetch(self.webhook))
        self._runner = asyncio.create_task(self._follow())
        return self

    async def _fetch(self, url: str) -> TwiML:
        signature = RequestValidator(self.token).compute_signature(url, self.form)
        async with httpx.AsyncClient() as http:
            response = await http.post(url, data=self.form, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200, (url, response.status_code, response.text)
        twiml = TwiML.parse(response.text)
        self.twiml.append(twiml)
        return twiml

    async def _run(self, twiml: TwiML) -> None:
        if twiml.stream_url is None:
            return
        leg = TwilioSim(twiml.stream_url, self.token, params=twiml.parameters, realtime=False,
                        call_sid=self.call_sid)
        leg.account_sid = ACCOUNT_SID
        await leg.open()
        await leg.say(silence(100))
        self.legs.append(leg)
        self._new_leg.set()

    async def _follow(self) -> None:
        """When the app closes the stream of a call that is still up, Twilio runs the TwiML after ``<Connect>``."""
        try:
            while True:
                leg = self.leg
                await leg.wait(lambda: leg.closed_by_app is not None or leg._closing, timeout=3600, what="the end")
                redirect = self.twiml[-1].redirect
                if self.completed_by_api or leg._closing or not redirect:
                    return
                twiml = await self._fetch(redirect)
                await self._run(twiml)
        finally:
            self.ended.set()

    async def wait_leg(self, count: int, timeout: float = 10.0) -> TwilioSim:
        """Wait until the call has had ``count`` streams; the newest."""
        async with asyncio.timeout(timeout):
            while len(self.legs) < count:
                self._new_leg.clear()
                await self._new_leg.wait()
        return self.leg

    async def complete(self) -> None:
        """The call ends (the REST API was told so): ``stop`` on the stream, then its socket closes."""
        self.completed_by_api = True
        if self.legs:
            await self.leg.stop()

    async def hang_up(self) -> None:
        """The caller hangs up."""
        await self.complete()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)


class TwilioAPI:
    """Twilio's REST API, the part the adapter uses: completing a call. ``calls``: CallSid → what ends that call
    (e.g. :meth:`PhoneCall.complete`, or a bare simulator's ``stop``); other CallSids are 404, as on Twilio."""

    def __init__(self, token: str, port: int | None = None) -> None:
        self.token = token
        self.calls: dict[str, Callable[[], Awaitable[None]]] = {}
        self.requests: list[dict] = []  # every request: sid, status, authorized, method
        self.server = LiveServer(self, port=port)

    @property
    def url(self) -> str:
        return self.server.http

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        parts = scope["path"].strip("/").split("/")
        headers = dict(scope["headers"])
        expected = base64.b64encode(f"{ACCOUNT_SID}:{self.token}".encode())
        authorized = headers.get(b"authorization", b"") == b"Basic " + expected
        ok_path = len(parts) == 5 and parts[:2] == ["2010-04-01", "Accounts"] and parts[3] == "Calls"
        sid = parts[4].removesuffix(".json") if ok_path else None
        form = dict(parse_qsl(body.decode()))
        self.requests.append({"sid": sid, "status": form.get("Status"), "authorized": authorized,
                              "method": scope["method"]})
        status = 404
        if not authorized:
            status = 401
        elif ok_path and scope["method"] == "POST" and parts[2] == ACCOUNT_SID and sid in self.calls:
            status = 200
            if form.get("Status") == "completed":
                await self.calls[sid]()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"sid": "%s"}' % (sid or "").encode()})
