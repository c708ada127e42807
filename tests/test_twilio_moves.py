"""Phone calls that outlive their process: the TwiML redirects back to the (signed) webhook after the stream, the
redirect resumes the same instance, a hang-up goes through Twilio's REST API (so the redirect does not bring the call
back), and a process that is draining or full refuses new streams. Against the real app on loopback, with the
Twilio simulator following the TwiML (tests/twilio_call.py); the move between processes itself is in
tests/test_cluster.py."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from adapters.twilio import mount_twilio
from tests.harness import LiveServer, free_port
from tests.test_twilio import TOKEN, Phone, build, sign, webhook
from tests.twilio_call import PhoneCall, TwilioAPI, TwiML
from tests.twilio_sim import ToneTranscriber, TwilioSim
from voice import create_app
from voice.testing import FakeTTS

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def phone_server(tmp_path):
    api = TwilioAPI(TOKEN)
    async with api.server:
        srv, _ = build(tmp_path, api_url=api.url)
        async with srv:
            yield srv, api


async def test_the_twiml_redirects_to_the_webhook_which_resumes_the_instance(phone_server):
    srv, _ = phone_server
    call_sid = "CA" + "4" * 32
    first = TwiML.parse((await webhook(srv, call_sid=call_sid)).text)
    assert first.redirect == f"{srv.http}/twilio/voice?instance={call_sid}" and first.redirect_method == "POST"
    assert "resumed" not in first.parameters
    form = {"CallSid": call_sid, "From": "+14155550100", "To": "+18005550199", "AccountSid": "AC" + "0" * 32}
    async with httpx.AsyncClient() as http:
        again = await http.post(first.redirect, data=form, headers={"X-Twilio-Signature": sign(first.redirect, form)})
        assert again.status_code == 200
        resumed = TwiML.parse(again.text)
        assert resumed.parameters["instance"] == call_sid and resumed.parameters["resumed"] == "1"
        assert resumed.parameters["token"] == first.parameters["token"]  # the same call, the same instance
        assert resumed.redirect == first.redirect  # and it can move again
        # the instance in the query is covered by the signature: another one is refused
        forged = f"{srv.http}/twilio/voice?instance=someone-else"
        r = await http.post(forged, data=form, headers={"X-Twilio-Signature": sign(first.redirect, form)})
        assert r.status_code == 403


async def test_by_caller_the_redirect_keeps_the_callers_instance(tmp_path):
    srv, _ = build(tmp_path, instance_from="caller", api_url="http://127.0.0.1:9")
    async with srv:
        twiml = TwiML.parse((await webhook(srv, caller="+14155550123")).text)
        assert twiml.parameters["instance"] == "+14155550123"
        assert twiml.redirect == f"{srv.http}/twilio/voice?instance=%2B14155550123"


async def test_an_agent_hangup_completes_the_call_through_the_api_and_the_redirect_is_not_followed(phone_server):
    srv, api = phone_server
    call = PhoneCall(f"{srv.http}/twilio/voice", TOKEN)
    api.calls[call.call_sid] = call.complete
    await call.dial()
    await call.leg.dtmf("#")  # Phone: "Goodbye now." then hangup()
    await asyncio.wait_for(call.ended.wait(), 5)
    assert api.requests == [{"sid": call.call_sid, "status": "completed", "authorized": True, "method": "POST"}]
    assert call.completed_by_api and len(call.legs) == 1 and len(call.twiml) == 1
    assert call.leg.played_bytes() >= len("Goodbye now.") * 0.02 * 8000 * 0.95  # heard before the end


async def test_a_stream_closed_without_hanging_up_comes_back_on_the_same_instance(phone_server):
    srv, _ = phone_server
    call = PhoneCall(f"{srv.http}/twilio/voice", TOKEN)
    await call.dial()
    runtime = srv.app.state.voice.runtime
    for _ in range(100):
        if runtime.live_calls():
            break
        await asyncio.sleep(0.02)
    [live] = runtime.live_calls()
    await live.close_connection(1001, "going away")  # what drain() does to every call
    leg = await call.wait_leg(2)
    assert call.legs[0].closed_by_app[1] == 1001
    assert call.twiml[1].parameters["instance"] == call.call_sid and call.twiml[1].parameters["resumed"] == "1"
    for _ in range(100):
        if runtime.live_calls():
            break
        await asyncio.sleep(0.02)
    [moved] = runtime.live_calls()
    assert moved.agent.instance_id == call.call_sid and moved.query["resumed"] == "1"
    await call.hang_up()
    assert leg.errors == []


async def test_a_draining_or_full_process_refuses_new_streams_and_counts_the_ones_it_has(phone_server):
    srv, _ = phone_server
    voice = srv.app.state.voice
    call = PhoneCall(f"{srv.http}/twilio/voice", TOKEN)
    await call.dial()
    async with httpx.AsyncClient() as http:
        assert voice.gate.active == 1 and (await http.get(f"{srv.http}/readyz")).status_code == 200
        voice.gate.draining = True
        ready = await http.get(f"{srv.http}/readyz")
        assert ready.status_code == 503 and ready.json()["reason"] == "draining"
        assert (await http.get(f"{srv.http}/healthz")).status_code == 200
    with pytest.raises(websockets.InvalidStatus) as refused:
        await TwilioSim(call.twiml[0].stream_url, TOKEN).connect()
    assert refused.value.response.status_code == 503
    await call.hang_up()
    for _ in range(100):
        if voice.gate.active == 0:
            break
        await asyncio.sleep(0.02)
    assert voice.gate.active == 0


async def test_without_an_auth_token_there_is_no_redirect(tmp_path, monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    port = free_port()
    app = create_app({"phone": Phone}, transcriber=ToneTranscriber(), tts=FakeTTS(), db_path=str(tmp_path / "d.db"))
    assert mount_twilio(app, agent="phone", public_url=f"http://127.0.0.1:{port}", insecure_dev=True)
    async with LiveServer(app, port=port) as srv, httpx.AsyncClient() as http:
        r = await http.post(f"{srv.http}/twilio/voice", data={"CallSid": "CAdev", "From": "+15550001"})
    twiml = TwiML.parse(r.text)
    assert twiml.stream_url and twiml.redirect is None  # closing the stream is what hangs up, as before
