/** VoiceClient with `transport: "webrtc"`: calls over WebRTC, the WebSocket as control connection, fallback. */
import test from "node:test";
import assert from "node:assert/strict";
import { VoiceClient } from "../voice-client.js";
import { RTC_RETRY_MS } from "../lib/connection.js";
import { FakeRTC, FakeSocket, fakeMic } from "./rtc-fakes.js";

/** The AudioEngine contract without Web Audio; `mediaStream` is what WebRTC sends. */
class FakeEngine {
  constructor(opts) {
    this.opts = opts;
    this.log = [];
    this.playing = false;
    this.played = 0;
  }
  prepare() {}
  async start() {
    this.mediaStream = fakeMic();
  }
  configurePlayback(rate) {
    this.log.push(`config:${rate}`);
  }
  enqueue(buf) {
    this.log.push(`audio:${buf.byteLength / 2}`);
  }
  discard() {}
  async flush() {
    this.log.push("flush");
    return 0;
  }
  stopCapture() {}
  resetCapture() {}
  async close() {
    this.log.push("close");
  }
  async setSinkId(id) {
    this.log.push(`sink:${id}`);
  }
  frame(rms, n = 640) {
    this.opts.onFrame(new Int16Array(n).buffer, rms);
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));

function setup(extra = {}) {
  FakeRTC.all = [];
  FakeSocket.all = [];
  const engines = [];
  const events = [];
  const sinks = [];
  const client = new VoiceClient({
    agent: "MyAgent",
    instance: "t1",
    host: "example.test",
    transport: "webrtc",
    iceServers: [],
    WebSocket: FakeSocket,
    createWebRTCTransport: (opts) => new FakeRTC(opts),
    audioElement: { setSinkId: async (id) => sinks.push(id) },
    createAudioEngine: (opts) => {
      const e = new FakeEngine(opts);
      engines.push(e);
      return e;
    },
    fetch: async () => ({ ok: true, json: async () => ({ messages: [] }) }),
    reconnect: { initialMs: 5, maxMs: 5, jitter: 0 },
    ...extra,
  });
  for (const type of ["transportchange", "connectionchange", "callchange", "error"]) {
    client.addEventListener(type, (e) => events.push({ type, ...e.detail }));
  }
  return {
    client,
    events,
    sinks,
    ws: () => FakeSocket.all.at(-1),
    rtc: () => FakeRTC.all.at(-1),
    engine: () => engines.at(-1),
    changes: () => events.filter((e) => e.type === "transportchange").map((e) => [e.transport, e.code]),
  };
}

/** Connected over the socket, call started, WebRTC open. */
async function inWebRTCCall(extra) {
  const s = setup(extra);
  s.client.connect();
  s.ws().open();
  await s.client.startCall();
  await tick();
  s.rtc().open();
  await tick();
  return s;
}

test("a call goes over WebRTC: the mic track, messages on the data channel, nothing on the socket", async () => {
  const s = setup();
  const { client } = s;
  client.connect();
  s.ws().open();
  assert.deepEqual(s.ws().types(), ["hello"]);
  assert.equal(client.transportInUse, "websocket");
  await client.startCall();
  await tick();
  const rtc = s.rtc();
  assert.ok(rtc, "a WebRTC attempt started");
  assert.equal(rtc.mic, s.engine().mediaStream, "the microphone track is sent");
  assert.deepEqual(rtc.opts.agent, "my-agent");
  assert.deepEqual(s.ws().types(), ["hello"], "no start_call on the socket");
  s.engine().frame(0.01);
  assert.equal(s.ws().binary().length, 0, "no mic frames on the socket while WebRTC connects");
  rtc.open();
  await tick();
  assert.equal(client.transportInUse, "webrtc");
  assert.equal(client.webrtc, rtc);
  assert.deepEqual(s.changes(), [["webrtc", "connected"]]);
  assert.deepEqual(rtc.types(), ["hello", "start_call"]);
  rtc.server({ type: "welcome", protocol_version: 1 });
  rtc.server({ type: "status", status: "idle" }); // greeting of the new session: the call goes on
  assert.equal(client.inCall, true);
  rtc.server({ type: "audio_config", format: "pcm16", sampleRate: 48000, transport: "webrtc" });
  assert.deepEqual(client.audioFormat, { format: "pcm16", sampleRate: 48000, transport: "webrtc" });
  assert.equal(s.engine().log.includes("config:48000"), false, "the PCM player is not used");
  rtc.server({ type: "status", status: "listening" });
  assert.equal(client.status, "listening");
  s.engine().frame(0.01);
  assert.equal(s.ws().binary().length, 0);
  rtc.server({ type: "transcript", role: "user", text: "hello there" });
  rtc.server({ type: "transcript_start", role: "assistant" });
  rtc.server({ type: "transcript_delta", text: "You said: " });
  rtc.server({ type: "status", status: "speaking" });
  assert.equal(client.playing, true);
  rtc.server({ type: "playback_interrupt" });
  await tick();
  assert.equal(s.engine().log.includes("flush"), false, "the server already dropped the audio");
  assert.equal(rtc.types().includes("playback_ack"), false);
  assert.equal(client.transcript.at(-1).interrupted, true);
  rtc.server({ type: "metrics", stt_ms: 100, voice_to_voice_ms: 800 });
  assert.equal(client.metrics.voice_to_voice_ms, 800);
  s.ws().server({ type: "status", status: "idle" }); // the standby socket's messages are not about the call
  s.ws().server({ type: "error", message: "idle", code: "idle_timeout" });
  assert.equal(client.inCall, true);
  assert.equal(client.error, null);
  assert.equal(client.sendText("typed in the call"), true);
  assert.deepEqual(rtc.sent.at(-1), { type: "text_message", text: "typed in the call" });
  assert.deepEqual(client.transcript.map((m) => [m.role, m.text]), [
    ["user", "hello there"],
    ["assistant", "You said: "],
  ]);
  assert.equal(client.stats.transport, "webrtc");
  assert.equal(client.stats.webrtc.opens, 1);
});

test("mute disables the track; end call says end_call on the data channel and closes it", async () => {
  const s = await inWebRTCCall();
  const { client } = s;
  const track = s.engine().mediaStream.track;
  client.setMuted(true);
  assert.equal(track.enabled, false);
  client.setMuted(false);
  assert.equal(track.enabled, true);
  await client.endCall();
  assert.equal(s.rtc().types().at(-1), "end_call");
  assert.equal(s.rtc().closed, true);
  assert.equal(client.transportInUse, "websocket");
  assert.deepEqual(s.changes().at(-1), ["websocket", "call-ended"]);
  assert.equal(client.connection, "open");
  assert.equal(client.sendText("after the call"), true);
  assert.deepEqual(JSON.parse(s.ws().sent.at(-1)), { type: "text_message", text: "after the call" });
  client.disconnect();
});

test("503: the call falls back to the socket, the reason is recorded, the next call tries WebRTC again", async () => {
  const s = setup();
  const { client } = s;
  client.connect();
  s.ws().open();
  await client.startCall();
  await tick();
  s.rtc().fail(Object.assign(new Error("WebRTC offer refused (503): full"), { status: 503 }));
  await tick();
  assert.equal(client.transportInUse, "websocket");
  assert.match(client.transportReason, /503/);
  const change = s.events.find((e) => e.type === "transportchange");
  assert.equal(change.transport, "websocket");
  assert.equal(change.code, "busy");
  assert.deepEqual(s.ws().types(), ["hello", "start_call"]);
  s.ws().server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  s.ws().server({ type: "status", status: "listening" });
  s.engine().frame(0.01);
  assert.equal(s.ws().binary().length, 1, "mic audio goes on the socket now");
  s.ws().onmessage({ data: new Int16Array([1, 2, 3]).buffer });
  assert.ok(s.engine().log.includes("audio:3"), "and the agent's audio plays through the PCM player");
  await client.endCall();
  assert.equal(s.ws().types().at(-1), "end_call");
  await client.startCall();
  await tick();
  assert.equal(FakeRTC.all.length, 2, "a new call tries WebRTC again");
  client.disconnect();
});

test("no WebRTC on the server (501): fallback, and later calls go straight to the socket", async () => {
  const s = setup();
  const { client } = s;
  client.connect();
  s.ws().open();
  await client.startCall();
  await tick();
  s.rtc().fail(Object.assign(new Error("refused"), { status: 501 }));
  await tick();
  assert.deepEqual(s.changes(), [["websocket", "unavailable"]]);
  assert.match(client.stats.webrtc.disabled, /501/);
  await client.endCall();
  await client.startCall();
  await tick();
  assert.equal(FakeRTC.all.length, 1);
  assert.equal(s.ws().types().filter((t) => t === "start_call").length, 2);
  client.disconnect();
});

test("no connection within webrtcTimeoutMs: fallback with a timeout reason", async () => {
  const s = setup({ webrtcTimeoutMs: 20 });
  s.client.connect();
  s.ws().open();
  await s.client.startCall();
  await new Promise((r) => setTimeout(r, 40));
  assert.deepEqual(s.changes(), [["websocket", "timeout"]]);
  assert.match(s.client.transportReason, /did not connect/);
  assert.equal(s.rtc().closed, true);
  assert.equal(s.ws().types().at(-1), "start_call");
  s.client.disconnect();
});

test("WebRTC fails while the socket is down: the call starts on the socket when it opens", async () => {
  const s = setup();
  const { client } = s;
  await client.startCall(); // connects; the socket isn't open yet
  await tick();
  s.rtc().fail(new Error("WebRTC connection failed: connection failed"));
  await tick();
  assert.deepEqual(s.changes(), [["websocket", "failed"]]);
  s.ws().open();
  assert.deepEqual(s.ws().types(), ["hello", "start_call"]);
  client.disconnect();
});

test("WebRTC opens before the socket: the socket then only stands by", async () => {
  const s = setup();
  const { client } = s;
  await client.startCall();
  await tick();
  s.rtc().open();
  await tick();
  assert.equal(client.connection, "open");
  s.ws().open();
  assert.deepEqual(s.ws().types(), ["hello"]);
  assert.deepEqual(s.rtc().types(), ["hello", "start_call"]);
  client.disconnect();
  assert.equal(s.rtc().closed, true);
  assert.equal(client.connection, "closed");
});

const afterRetryPause = () => new Promise((r) => setTimeout(r, RTC_RETRY_MS + 20));

test("connection lost while the socket is up: WebRTC is re-established after a short pause", async () => {
  const s = await inWebRTCCall();
  const { client } = s;
  s.rtc().server({ type: "status", status: "listening" });
  s.rtc().drop(1006, "connection lost");
  assert.equal(client.status, "idle");
  assert.equal(client.connection, "connecting");
  assert.deepEqual(s.changes().at(-1), ["websocket", "lost"]);
  await afterRetryPause();
  assert.equal(FakeRTC.all.length, 2);
  assert.equal(client.inCall, true);
  assert.equal(client.connection, "open");
  s.rtc().open();
  await tick();
  assert.deepEqual(s.rtc().types(), ["hello", "start_call"]);
  assert.equal(client.transportInUse, "webrtc");
  assert.equal(client.error, null);
  client.disconnect();
});

test("lost too often: the rest of the call runs over the socket", async () => {
  const s = await inWebRTCCall();
  const { client } = s;
  for (let i = 0; i < 3; i++) {
    s.rtc().drop(1006, "connection lost");
    await afterRetryPause();
    s.rtc().open();
    await tick();
  }
  assert.equal(FakeRTC.all.length, 4);
  s.rtc().drop(1006, "connection lost");
  await afterRetryPause();
  assert.equal(FakeRTC.all.length, 4, "no fifth attempt");
  assert.equal(s.ws().types().at(-1), "start_call");
  assert.equal(client.connection, "open");
  assert.equal(client.error, null);
  assert.equal(client.stats.webrtc.losses, 4);
  client.disconnect();
});

test("ending the call while WebRTC is being re-established cancels it", async () => {
  const s = await inWebRTCCall();
  s.rtc().drop(1006, "connection lost");
  await s.client.endCall();
  await afterRetryPause();
  assert.equal(FakeRTC.all.length, 1);
  assert.equal(s.client.connection, "open");
  assert.equal(s.client.error, null);
  s.client.disconnect();
});

test("server restart: WebRTC and the socket drop; the call resumes over WebRTC when the socket is back", async () => {
  const s = await inWebRTCCall();
  const { client } = s;
  const first = s.ws();
  first.drop(); // hidden while the call runs on WebRTC...
  assert.equal(client.connection, "open");
  assert.equal(client.error, null);
  s.rtc().drop(1001, "server shutting down");
  assert.equal(client.connection, "connecting"); // ...but now it matters
  assert.match(client.error, /Reconnecting/);
  assert.equal(FakeRTC.all.length, 1, "no attempt while the server is unreachable");
  await new Promise((r) => setTimeout(r, 20)); // the socket's backoff
  const second = s.ws();
  assert.notEqual(second, first);
  second.open();
  assert.deepEqual(second.types(), ["hello"], "no start_call on the socket: WebRTC is tried again");
  await tick();
  await afterRetryPause(); // the pending retry finds the new attempt in progress: no second one
  assert.equal(FakeRTC.all.length, 2);
  s.rtc().open();
  await tick();
  assert.equal(client.connection, "open");
  assert.equal(client.error, null);
  assert.equal(client.transportInUse, "webrtc");
  assert.deepEqual(s.rtc().types(), ["hello", "start_call"]);
  client.disconnect();
});

test("the agent hangs up (close 1000): the call ends, no end_call is sent", async () => {
  const s = await inWebRTCCall();
  const { client } = s;
  s.rtc().drop(1000, "call ended by agent");
  await tick();
  assert.equal(client.inCall, false);
  assert.deepEqual(s.changes().at(-1), ["websocket", "call-ended"]);
  assert.equal(s.rtc().types().includes("end_call"), false);
  assert.equal(s.ws().types().includes("end_call"), false);
  assert.equal(client.error, null);
  assert.equal(FakeRTC.all.length, 1);
  client.disconnect();
});

test("policy close (1008) ends the call with an error", async () => {
  const s = await inWebRTCCall();
  s.rtc().drop(1008, "too many invalid or excess messages");
  await tick();
  assert.equal(s.client.inCall, false);
  assert.match(s.client.error, /too many invalid/);
  s.client.disconnect();
});

test("output device: the WebRTC audio element and the Web Audio engine both follow", async () => {
  const s = await inWebRTCCall({ outputDeviceId: "dev-1" });
  assert.equal(await s.client.setOutputDevice("dev-2"), true);
  assert.deepEqual(s.sinks, ["dev-1", "dev-2"]);
  assert.ok(s.engine().log.includes("sink:dev-2"));
  s.client.disconnect();
});

test("muted before the call: the new call's track starts disabled", async () => {
  const s = setup();
  s.client.connect();
  s.ws().open();
  s.client.setMuted(true);
  await s.client.startCall();
  await tick();
  assert.equal(s.engine().mediaStream.track.enabled, false);
  s.client.disconnect();
});
