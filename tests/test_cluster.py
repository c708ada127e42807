"""Three ``voice serve`` processes (``tests/cluster_app.py``: fake providers) on one PostgreSQL database
(``VOICE_DATABASE_URL``) behind the real HAProxy running ``deploy/haproxy.cfg``: a process killed mid-conversation
loses no completed turn and its calls go on elsewhere; ``speak_all`` reaches an instance's calls on every process and
is stored once; schedules fire exactly once, on survivors, with failing ones retried to a bound; a deploy (SIGTERM)
lets the reply in flight finish, says 1001, and browser and phone calls (Twilio's ``<Redirect>``) go on elsewhere."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
import websockets

from tests.cluster import Cluster, ServeProcess, sigkill, sigterm
from tests.harness import Client, free_port
from tests.pg import PostgresServer
from tests.twilio_call import PhoneCall, TwilioAPI
from tests.twilio_sim import tone
from voice.testing import fake_speech_frame

TOKEN = "cluster-twilio-token"
PHONE_REPLY_BYTES = len("Done: hello phone.") * 0.005 * 8000  # FakeTTS(seconds_per_char=0.005), μ-law 8 kHz


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer, tmp_path_factory) -> Iterator[tuple[Cluster, str, int]]:
    """The processes and the balancer, shared by the tests of this module (each restarts what the last one
    killed); the database's DSN; the port the fake Twilio REST API listens on when a test runs it."""
    database = postgres_server.create_database()
    dsn = postgres_server.dsn(database)
    api_port = free_port()
    workdir = tmp_path_factory.mktemp("cluster")
    group = Cluster(dsn, workdir)
    group.env_all({"TWILIO_AUTH_TOKEN": TOKEN, "VOICE_PUBLIC_URL": group.public,
                   "TWILIO_API_URL": f"http://127.0.0.1:{api_port}"})
    try:
        asyncio.run(group.start())
        yield group, dsn, api_port
    finally:
        group.stop()
        postgres_server.drop_database(database)


async def connect(url: str, timeout: float = 5.0) -> Client:
    """Connect as the browser client does after losing its server: try again until one takes the call."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(url)
        except (OSError, websockets.InvalidStatus, websockets.ConnectionClosed):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def history(cluster: Cluster, instance: str) -> list[dict]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{cluster.public}/agents/worker/{instance}/messages")
    response.raise_for_status()
    return response.json()["messages"]


async def stored_as(cluster: Cluster, instance: str, want, timeout: float = 5.0) -> None:
    """Wait until the instance's stored contents equal ``want`` (a list) or satisfy it (a predicate)."""
    deadline = time.monotonic() + timeout
    while True:
        contents = [m["content"] for m in await history(cluster, instance)]
        if (want(contents) if callable(want) else contents == want) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert want(contents) if callable(want) else contents == want, contents


async def turn(client: Client, text: str, typed: bool = False) -> dict:
    mark = client.mark()
    await client.send({"type": "text_message", "text": text} if typed else fake_speech_frame("final", text))
    return await client.wait_for("transcript_end", after=mark)


async def closed(client: Client, timeout: float = 5.0) -> websockets.ConnectionClosed:
    deadline = time.monotonic() + timeout
    while client.closed is None:
        assert time.monotonic() < deadline, "the client did not notice its server went away"
        await asyncio.sleep(0.02)
    return client.closed


async def heard_at(client: Client, text: str, after: int) -> float:
    """When the first audio of the reply that says ``text`` arrived (the audio may follow its transcript_end)."""
    end = await client.wait_for("transcript_end", text=text, after=after)
    index = next(i for i, (_, m) in enumerate(client.messages) if m is end)
    start = max(i for i in range(after, index) if isinstance(client.messages[i][1], dict)
                and client.messages[i][1].get("type") == "transcript_start")
    deadline = time.monotonic() + 5
    while not (audio := [t for t, item in client.messages[start:] if isinstance(item, bytes)]):
        assert time.monotonic() < deadline, f"no audio for {text!r}"
        await asyncio.sleep(0.01)
    return audio[0]


async def test_a_killed_process_loses_no_completed_turn_and_its_calls_go_on(cluster) -> None:
    group, _, _ = cluster
    await group.ensure()
    url = f"{group.proxy.ws}/agents/worker/alice"
    client = await connect(url)
    await client.start_call()
    said = ["first thing", "second thing", "third thing"]
    for text in said:
        assert (await turn(client, text))["text"] == f"Done: {text}."
        await asyncio.sleep(0.2)  # the user hears the reply out (~0.05 s of audio)
    expected = [c for text in said for c in (text, f"Done: {text}.")]
    await stored_as(group, "alice", expected)  # the turns are complete: heard and stored
    victim = await group.serving("alice")
    sigkill(victim)
    await victim.wait_exit()
    await closed(client)

    again = await connect(url)  # through the balancer, to a survivor
    assert (await group.serving("alice")) is not victim
    stored = await history(group, "alice")
    assert [m["content"] for m in stored] == expected, stored
    await again.start_call()
    await turn(again, "what did I say", typed=True)
    context = again.json("context")[-1]
    assert context["messages"][-len(expected):] == expected and context["pid"] != victim.pid
    await again.close()


async def test_speak_all_reaches_the_instance_on_every_process_and_is_stored_once(cluster) -> None:
    group, _, _ = cluster
    await group.ensure()
    one, two, _ = group.procs.values()
    a = await connect(f"{one.ws}/agents/worker/shared")  # straight to two processes: the balancer would send both
    b = await connect(f"{two.ws}/agents/worker/shared")  # connections of one instance to one process
    for c in (a, b):
        await c.start_call()
    await turn(b, "hello from b")  # b's process has the instance's history in memory from here on
    mark_a, mark_b = a.mark(), b.mark()
    sent = time.monotonic()
    await a.send({"type": "text_message", "text": "announce fire drill"})
    for c, mark in ((a, mark_a), (b, mark_b)):
        assert await heard_at(c, "Announcement: fire drill", mark) - sent < 1.0
    await stored_as(group, "shared", lambda contents: "Announcement: fire drill" in contents)
    await asyncio.sleep(0.3)  # a second copy would land by now
    contents = [m["content"] for m in await history(group, "shared")]
    assert contents.count("Announcement: fire drill") == 1, contents
    await turn(b, "what did I say", typed=True)  # b's next turn sees what a's process stored
    assert "Announcement: fire drill" in b.json("context")[-1]["messages"]
    for c in (a, b):
        await c.close()


async def test_schedules_fire_exactly_once_on_survivors_and_failures_are_kept(cluster) -> None:
    group, dsn, _ = cluster
    await group.ensure()
    one, two, three = group.procs.values()
    a = await connect(f"{one.ws}/agents/worker/sched")
    c = await connect(f"{three.ws}/agents/worker/sched")
    assert (await turn(a, "schedule 50 1.0 2.0 batch", typed=True))["text"] == "Scheduled 50."
    assert (await turn(c, "schedule 1 1.5 1.5 late", typed=True))["text"] == "Scheduled 1."
    sigkill(three)  # before its schedule is due
    await three.wait_exit()
    # Armed once three is gone: a schedule due at once could otherwise be claimed by three in the instant before its
    # death, and a dead holder's claim only runs after its lease (60 s; tests/test_shared_store.py covers that).
    assert (await turn(a, "explode boom", typed=True))["text"] == "Armed."

    deadline = time.monotonic() + 8
    while True:
        events = [m["content"] for m in await history(group, "sched") if m["role"] == "event"]
        ticks = [e for e in events if e.startswith("tick")]
        explosions = [e for e in events if e.startswith("explode boom")]
        if (len(ticks) >= 51 and len(explosions) >= 3) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # a second firing of anything would land by now
    events = [m["content"] for m in await history(group, "sched") if m["role"] == "event"]
    fired = Counter(re.match(r"tick (\w+ \d+) by (\d+)", e).group(1) for e in events if e.startswith("tick"))
    assert fired == Counter([f"batch {i}" for i in range(50)] + ["late 0"]), fired
    survivors = {str(one.pid), str(two.pid)}
    assert {e.rsplit(" ", 1)[1] for e in events} <= survivors
    explosions = [e for e in events if e.startswith("explode boom")]
    assert len(explosions) == 3, events  # schedule_attempts, whichever process ran each attempt

    db = await asyncpg.connect(dsn)
    try:
        rows = await db.fetch("SELECT method, failed, attempts, claimed_by FROM voice_schedules")
    finally:
        await db.close()
    assert [(r["method"], r["failed"], r["attempts"], r["claimed_by"]) for r in rows] == [("explode", True, 3, None)]
    await a.close()


async def test_a_deploy_drains_a_process_and_browser_and_phone_calls_go_on_elsewhere(cluster) -> None:
    group, _, api_port = cluster
    await group.ensure()
    api = TwilioAPI(TOKEN, port=api_port)
    async with api.server:
        phone = PhoneCall(f"{group.public}/twilio/voice", TOKEN)
        api.calls[phone.call_sid] = phone.complete
        await phone.dial()
        await phone.leg.say(tone(300), then_silence_ms=300)
        await phone.leg.wait(lambda: len(phone.leg.received) >= 0.9 * PHONE_REPLY_BYTES, what="the reply")
        holder = next(group.procs[name] for name, row in group.proxy.stats("voice_twilio").items()
                      if int(row["scur"]) == 1)
        instance = await _instance_on(group, holder)
        client = await connect(f"{group.proxy.ws}/agents/worker/{instance}")
        await client.start_call()
        await client.send(fake_speech_frame("final", "slow answer"))
        await client.wait_for("status", status="thinking")

        sigterm(holder)
        await _wait_not_ready(holder)
        assert (await client.wait_for("transcript_end", timeout=5))["text"] == "Done: slow answer."
        error = await client.wait_for("error", code="server_shutdown", timeout=6)
        assert "reconnect" in error["message"]
        assert (await closed(client)).rcvd.code == 1001

        again = await connect(f"{group.proxy.ws}/agents/worker/{instance}")
        assert (await group.serving(instance)) is not holder
        assert [m["content"] for m in await history(group, instance)] == ["slow answer", "Done: slow answer."]
        await again.start_call()
        await turn(again, "what did I say", typed=True)
        assert again.json("context")[-1]["messages"][-2:] == ["slow answer", "Done: slow answer."]

        leg = await phone.wait_leg(2)  # Twilio followed the <Redirect> to the webhook, then to a new stream
        assert phone.legs[0].closed_by_app[1] == 1001
        assert phone.twiml[1].parameters["instance"] == phone.call_sid and phone.twiml[1].parameters["resumed"] == "1"
        await leg.say(tone(300), then_silence_ms=300)
        await leg.wait(lambda: len(leg.received) >= 0.9 * PHONE_REPLY_BYTES, what="the reply after the move")
        assert group.proxy.stats("voice_twilio")[holder.name]["scur"] == "0"
        await asyncio.sleep(0.3)
        contents = [m["content"] for m in await history(group, phone.call_sid)]
        assert contents == ["hello phone", "Done: hello phone."] * 2
        assert await holder.wait_exit() in (0, -15)
        await phone.hang_up()
        await again.close()
        assert phone.legs[0].errors == [] and leg.errors == []


async def _instance_on(group: Cluster, proc: ServeProcess) -> str:
    """An instance name the balancer sends to ``proc``."""
    for n in range(300):
        if (await group.serving(f"deploy-{n}")) is proc:
            return f"deploy-{n}"
    raise AssertionError(f"no instance hashes to {proc.name}")


async def _wait_not_ready(proc: ServeProcess, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while (response := await http.get(f"{proc.url}/readyz")).status_code != 503:
            assert time.monotonic() < deadline, response.text
            await asyncio.sleep(0.02)
        assert response.json()["reason"] == "draining"
        assert (await http.get(f"{proc.url}/healthz")).status_code == 200  # alive all the same
