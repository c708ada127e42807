import test from "node:test";
import assert from "node:assert/strict";
import {
  WebRTCCall,
  webrtcEndpoint,
  signalingUrl,
  classifyFailure,
  closeOutcome,
  MAX_REESTABLISH,
} from "../lib/webrtc-call.js";
import { FakeRTC, fakeMic } from "./rtc-fakes.js";

const tick = () => new Promise((r) => setTimeout(r, 0));

test("the signaling endpoint is derived from the WebSocket URL", () => {
  assert.deepEqual(webrtcEndpoint("ws://example.test:8080/agents/my-agent/room%201?token=t&x=1"), {
    baseUrl: "http://example.test:8080",
    agent: "my-agent",
    instance: "room 1",
    query: { token: "t", x: "1" },
  });
  const behindPrefix = webrtcEndpoint("wss://voice.example.com/api/agents/a/b/");
  assert.equal(behindPrefix.baseUrl, "https://voice.example.com/api");
  assert.equal(signalingUrl(behindPrefix), "https://voice.example.com/api/agents/a/b/webrtc");
  assert.equal(
    signalingUrl(webrtcEndpoint("ws://h/agents/my-agent/room%201?token=t")),
    "http://h/agents/my-agent/room%201/webrtc?token=t",
  );
  assert.equal(webrtcEndpoint("ws://h/custom/socket"), null);
  assert.equal(webrtcEndpoint("not a url"), null);
});

test("failures are classified: what to tell, and whether retrying can help", () => {
  const http = (status) => classifyFailure(Object.assign(new Error("x"), { status }));
  assert.deepEqual(
    [501, 404, 405, 400, 503, 500].map((s) => [http(s).code, http(s).permanent]),
    [["unavailable", true], ["unavailable", true], ["unavailable", true], ["refused", true], ["busy", false], ["http", false]],
  );
  assert.match(http(501).reason, /not installed.*501/);
  assert.match(http(503).reason, /503/);
  assert.equal(http(503).status, 503);
  const timeout = classifyFailure(Object.assign(new Error("WebRTC did not connect within 10 s"), { code: "timeout" }));
  assert.deepEqual([timeout.code, timeout.permanent, timeout.reason], ["timeout", false, "WebRTC did not connect within 10 s"]);
  const ice = classifyFailure(new Error("WebRTC connection failed: connection failed"));
  assert.deepEqual([ice.code, ice.permanent, ice.status], ["failed", false, null]);
  assert.equal(classifyFailure(Object.assign(new Error("no"), { code: "unsupported" })).permanent, true);
  assert.equal(classifyFailure(undefined).code, "failed");
});

test("close codes: the server ending the call vs a lost connection", () => {
  assert.equal(closeOutcome({ code: 1000 }), "ended");
  assert.equal(closeOutcome({ code: 1008 }), "ended");
  assert.equal(closeOutcome({ code: 1001 }), "lost");
  assert.equal(closeOutcome({ code: 1006 }), "lost");
  assert.equal(closeOutcome(undefined), "lost");
});

function setup(extra = {}) {
  FakeRTC.all = [];
  const events = [];
  const fetches = [];
  const call = new WebRTCCall(
    {
      endpoint: webrtcEndpoint("ws://h/agents/a/i"),
      createTransport: (opts) => new FakeRTC(opts),
      fetch: async (url, init) => {
        fetches.push([init?.method, url]);
        return { ok: true, status: 200, json: async () => ({ iceServers: [{ urls: "stun:s.example" }] }) };
      },
      audioElement: { muted: false, setSinkId: async (id) => events.push(["sink", id]) },
      ...extra,
    },
    {
      onOpen: () => events.push(["open"]),
      onMessage: (data) => events.push(["message", JSON.parse(data).type]),
      onFallback: (f) => events.push(["fallback", f.code]),
      onClose: (info, outcome) => events.push(["close", info.code, outcome]),
    },
  );
  return { call, events, fetches, rtc: () => FakeRTC.all.at(-1) };
}

test("an attempt asks for the ICE servers, connects with the microphone, and opens", async () => {
  const { call, events, fetches, rtc } = setup({ offerFilter: (s) => s });
  const mic = fakeMic();
  call.attempt(mic);
  assert.equal(call.busy, true);
  assert.equal(call.wantsCall(), false, "one attempt at a time");
  await tick();
  assert.deepEqual(fetches, [["GET", "http://h/agents/a/i/webrtc"]]);
  const t = rtc();
  assert.deepEqual(t.opts.iceServers, [{ urls: "stun:s.example" }]);
  assert.equal(t.opts.parse, false);
  assert.equal(typeof t.opts.offerFilter, "function");
  assert.equal(t.mic, mic);
  t.open();
  await tick();
  assert.deepEqual(events, [["open"]]);
  assert.equal(call.live, true);
  assert.equal(call.busy, false);
  assert.equal(call.sendJSON({ type: "hello" }), true);
  assert.deepEqual(t.sent, [{ type: "hello" }]);
  t.server({ type: "welcome" });
  assert.deepEqual(events.at(-1), ["message", "welcome"]);
  call.setMuted(true);
  assert.equal(mic.track.enabled, false);
  call.setMuted(false);
  assert.equal(mic.track.enabled, true);
  call.endCall();
  assert.equal(t.closed, true);
  assert.equal(call.live, false);
  t.server({ type: "status" }); // after endCall: ignored
  assert.equal(events.length, 2);
});

test("no WebRTC on the server (GET answers 501): fall back before any peer connection, and stay off", async () => {
  const { call, events } = setup({
    fetch: async () => ({ ok: false, status: 501, statusText: "Not Implemented", json: async () => ({}) }),
  });
  call.attempt(null);
  await tick();
  await tick();
  assert.equal(FakeRTC.all.length, 0);
  assert.deepEqual(events, [["fallback", "unavailable"]]);
  assert.equal(call.disabled.code, "unavailable");
  call.endCall();
  assert.equal(call.wantsCall(), false, "permanent: not on the next call either");
});

test("503 from the offer: fall back for this call, try again on the next", async () => {
  const { call, events, rtc } = setup({ iceServers: [] });
  call.attempt(null);
  await tick();
  rtc().fail(Object.assign(new Error("full"), { status: 503 }));
  await tick();
  assert.deepEqual(events, [["fallback", "busy"]]);
  assert.equal(rtc().closed, true);
  assert.equal(call.wantsCall(), false, "this call stays on the WebSocket");
  call.endCall();
  assert.equal(call.wantsCall(), true);
  assert.equal(call.stats.fallbacks, 1);
});

test("no connection within the timeout: fall back and close the attempt", async () => {
  const { call, events, rtc } = setup({ iceServers: [], timeoutMs: 20 });
  call.attempt(null);
  await new Promise((r) => setTimeout(r, 40));
  assert.deepEqual(events, [["fallback", "timeout"]]);
  assert.equal(call.stats.last.reason, "WebRTC did not connect within 0.02 s");
  assert.equal(rtc().closed, true);
  rtc().open(); // too late: ignored
  await tick();
  assert.deepEqual(events, [["fallback", "timeout"]]);
});

test("a browser without WebRTC falls back at once", async () => {
  const { call, events } = setup({ createTransport: undefined, RTCPeerConnection: undefined });
  assert.equal(globalThis.RTCPeerConnection, undefined);
  call.attempt(null);
  await tick();
  assert.deepEqual(events, [["fallback", "unsupported"]]);
  assert.equal(call.disabled.code, "unsupported");
});

test("lost connections are re-established a few times per call, then the call stays on the socket", async () => {
  const { call, events, rtc } = setup({ iceServers: [] });
  for (let i = 0; i <= MAX_REESTABLISH; i++) {
    assert.equal(call.wantsCall(), true, `attempt ${i}`);
    call.attempt(null);
    await tick();
    rtc().open();
    await tick();
    rtc().drop(1006, "connection lost");
  }
  assert.equal(call.wantsCall(), false);
  assert.equal(events.filter((e) => e[0] === "close" && e[2] === "lost").length, MAX_REESTABLISH + 1);
  call.endCall();
  assert.equal(call.wantsCall(), true, "a new call starts afresh");
});

test("the server hanging up is reported as ended", async () => {
  const { call, events, rtc } = setup({ iceServers: [] });
  call.attempt(null);
  await tick();
  rtc().open();
  await tick();
  rtc().drop(1000, "call ended by agent");
  assert.deepEqual(events.at(-1), ["close", 1000, "ended"]);
  assert.equal(call.live, false);
});

test("output device: applied to the audio element", async () => {
  const { call, events } = setup({ iceServers: [], sinkId: "dev-1" });
  assert.equal(call.audioElement.autoplay, true);
  await tick();
  assert.deepEqual(events, [["sink", "dev-1"]]);
  assert.equal(await call.setSinkId("dev-2"), true);
  assert.deepEqual(events.at(-1), ["sink", "dev-2"]);
  const { call: noSink } = setup({ audioElement: {} });
  noSink.audioElement;
  assert.equal(await noSink.setSinkId("x"), false);
});

test("playback off (dictation): the agent's track is received muted", () => {
  const { call } = setup({ playback: false });
  assert.equal(call.audioElement.muted, true);
});
