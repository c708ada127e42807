import test from "node:test";
import assert from "node:assert/strict";
import { FakeEngine, setup, tick } from "./client-fakes.js";

test("URL, hello on every open, and the connection state", async () => {
  const { client, transport, events } = setup();
  assert.equal(client.url, "ws://example.test/agents/my-agent/t1");
  client.connect();
  assert.equal(client.connection, "connecting");
  transport.open();
  assert.equal(client.connection, "open");
  assert.deepEqual(transport.sent[0], { type: "hello", protocol_version: 1 });
  transport.drop();
  assert.equal(client.connection, "connecting");
  assert.match(client.error, /lost/);
  transport.open();
  assert.deepEqual(transport.types(), ["hello", "hello"]);
  assert.equal(client.error, null);
  assert.deepEqual(
    events.filter((e) => e.type === "connectionchange").map((e) => e.detail.connection),
    ["connecting", "open", "connecting", "open"],
  );
});

test("server unreachable: a clear error, no crash", () => {
  const { client, transport } = setup();
  client.connect();
  transport.onclose({ willRetry: true, wasOpen: false });
  assert.match(client.error, /Can't reach the voice server at example\.test/);
});

test("loads history on (re)connect, replacing the local list", async () => {
  const { client, transport, history, fetches } = setup();
  history.messages = [
    { id: 1, role: "user", content: "hi", interrupted: false, created_at: 1 },
    { id: 2, role: "assistant", content: "hello, how", interrupted: true, created_at: 2 },
  ];
  client.connect();
  transport.open();
  await tick();
  assert.equal(fetches[0], "http://example.test/agents/my-agent/t1/messages");
  assert.deepEqual(
    client.transcript.map((m) => [m.role, m.text, m.interrupted]),
    [["user", "hi", false], ["assistant", "hello, how", true]],
  );
});

test("call lifecycle: start_call after the mic is ready, audio streaming, end_call", async () => {
  const { client, transport, engine } = setup();
  client.connect();
  transport.open();
  await client.startCall();
  assert.equal(client.inCall, true);
  assert.deepEqual(engine().log.slice(0, 3), ["config:16000", "prepare", "start"]);
  assert.equal(transport.types().at(-1), "start_call");
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 24000 });
  transport.server({ type: "status", status: "listening" });
  assert.equal(client.status, "listening");
  assert.ok(engine().log.includes("config:24000"));
  engine().frame(0.01);
  engine().frame(0.01);
  assert.equal(transport.binary.length, 2);
  assert.equal(transport.binary[0].byteLength, 1280);
  transport.audio([1, 2, 3, 4]);
  assert.ok(engine().log.includes("audio:4"));
  assert.equal(client.stats.samplesReceived, 4);
  await client.endCall();
  assert.equal(transport.types().at(-1), "end_call");
  assert.equal(client.inCall, false);
  assert.equal(client.status, "idle");
  assert.ok(engine().log.includes("close"));
});

test("end_call while agent audio plays: flush and playback_ack first", async () => {
  const { client, transport, engine } = setup();
  client.connect();
  transport.open();
  await client.startCall();
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  engine().play(4800);
  await client.endCall();
  const tail = transport.sent.slice(-3);
  assert.deepEqual(tail, [
    { type: "playback_ack", played_samples: 4800 }, // periodic report while playing
    { type: "playback_ack", played_samples: 4800 }, // the flush report
    { type: "end_call" },
  ]);
});

test("playback_interrupt flushes, acks the heard position, and marks the reply interrupted", async () => {
  const { client, transport, engine } = setup();
  client.connect();
  transport.open();
  await client.startCall();
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  transport.server({ type: "transcript_start", role: "assistant" });
  transport.server({ type: "transcript_delta", text: "Once upon " });
  transport.server({ type: "transcript_delta", text: "a time" });
  engine().play(3200);
  transport.server({ type: "playback_interrupt" });
  await tick();
  assert.ok(engine().log.includes("flush"));
  assert.deepEqual(transport.sent.at(-1), { type: "playback_ack", played_samples: 3200 });
  assert.equal(client.transcript.at(-1).interrupted, true);
  assert.equal(client.transcript.at(-1).text, "Once upon a time");
});

test("local barge-in: flush → playback_ack → interrupt, in that order", async () => {
  const { client, transport, engine, events } = setup({ interruptMs: 120 });
  client.connect();
  transport.open();
  await client.startCall();
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  engine().play(8000);
  transport.sent.length = 0;
  engine().frame(0.3);
  engine().frame(0.3);
  assert.equal(transport.types().includes("interrupt"), false, "not on a short burst");
  engine().frame(0.3);
  await tick();
  assert.deepEqual(
    transport.types().filter((t) => t !== "start_of_speech"),
    ["playback_ack", "interrupt"],
  );
  assert.equal(transport.sent.find((m) => m.type === "playback_ack").played_samples, 8000);
  assert.equal(events.filter((e) => e.type === "bargein").length, 1);
  assert.equal(client.stats.bargeIns, 1);
});

test("after a local barge-in, in-flight agent audio is discarded until the server moves on", async () => {
  const { client, transport, engine } = setup({ interruptMs: 80 });
  client.connect();
  transport.open();
  await client.startCall();
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  engine().play(8000);
  engine().frame(0.3);
  engine().frame(0.3);
  await tick();
  assert.equal(transport.types().at(-1), "interrupt");
  transport.audio(new Array(640).fill(5)); // sent by the server before it saw the interrupt
  transport.server({ type: "status", status: "speaking" }); // stale too
  transport.audio(new Array(640).fill(5));
  assert.deepEqual(engine().log.slice(-2), ["discard:640", "discard:640"]);
  transport.server({ type: "status", status: "listening" }); // the server handled the interrupt
  transport.audio(new Array(320).fill(5));
  assert.equal(engine().log.at(-1), "audio:320");
  assert.equal(client.stats.samplesDiscarded, 1280);
  assert.equal(client.stats.samplesReceived, 1600);
});

test("no barge-in while the agent is silent, or when disabled", async () => {
  const { client, transport, engine } = setup({ bargeIn: false });
  client.connect();
  transport.open();
  await client.startCall();
  engine().play(100);
  for (let i = 0; i < 10; i++) engine().frame(0.5);
  await tick();
  assert.equal(transport.types().includes("interrupt"), false);
});

test("speech hints and mute", async () => {
  const { client, transport, engine } = setup();
  client.connect();
  transport.open();
  await client.startCall();
  engine().frame(0.2);
  assert.equal(transport.types().at(-1), "start_of_speech");
  client.toggleMute();
  assert.equal(client.muted, true);
  assert.equal(transport.types().at(-1), "end_of_speech", "muting mid-utterance closes it");
  const before = transport.binary.length;
  engine().frame(0.2);
  assert.equal(transport.binary.length, before, "nothing is sent while muted");
  assert.equal(client.audioLevel, 0);
});

test("reconnect during a call re-sends hello and start_call; stale idle is ignored", async () => {
  const { client, transport, engine } = setup();
  client.connect();
  transport.open();
  await client.startCall();
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  transport.server({ type: "status", status: "listening" });
  transport.drop(); // server restart
  assert.equal(client.inCall, true, "the call survives the drop");
  transport.sent.length = 0;
  transport.open();
  assert.deepEqual(transport.types(), ["hello", "start_call"]);
  transport.server({ type: "welcome", protocol_version: 1 });
  transport.server({ type: "status", status: "idle" }); // every new connection's greeting
  assert.equal(client.inCall, true);
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  transport.server({ type: "status", status: "listening" });
  assert.equal(client.inCall, true);
  assert.equal(engine().log.filter((l) => l === "start").length, 1, "the microphone stays open");
});

test("idle after the server acknowledged the call ends it locally (no end_call sent)", async () => {
  const { client, transport, engine } = setup();
  client.connect();
  transport.open();
  await client.startCall();
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  transport.server({ type: "status", status: "listening" });
  transport.server({ type: "status", status: "idle" });
  await tick();
  assert.equal(client.inCall, false);
  assert.equal(transport.types().includes("end_call"), false);
  assert.ok(engine().log.includes("close"));
});

test("microphone denied: visible error, call not started on the server", async () => {
  const { client, transport } = setup();
  client.connect();
  transport.open();
  FakeEngine.failWith = Object.assign(new Error("denied"), { name: "NotAllowedError" });
  await client.startCall();
  assert.equal(client.inCall, false);
  assert.match(client.error, /Microphone access was denied/);
  assert.equal(transport.types().includes("start_call"), false);
});

test("startCall before the socket is open starts the call once it opens", async () => {
  const { client, transport } = setup();
  await client.startCall(); // connects by itself
  assert.equal(transport.connects, 1);
  assert.equal(transport.types().includes("start_call"), false);
  transport.open();
  assert.deepEqual(transport.types(), ["hello", "start_call"]);
});

test("transcripts, interim text, metrics, errors, unknown messages", () => {
  const { client, transport, events } = setup();
  client.connect();
  transport.open();
  transport.server({ type: "transcript_interim", text: "what's the" });
  assert.equal(client.interimTranscript, "what's the");
  transport.server({ type: "transcript_interim", text: "" });
  assert.equal(client.interimTranscript, null);
  transport.server({ type: "transcript_interim", text: "what's the weather" });
  transport.server({ type: "transcript", role: "user", text: "What's the weather?" });
  assert.equal(client.interimTranscript, null);
  transport.server({ type: "transcript_start", role: "assistant" });
  transport.server({ type: "transcript_delta", text: "Sunny" });
  transport.server({ type: "transcript_end", text: "Sunny today." });
  assert.deepEqual(
    client.transcript.map((m) => [m.role, m.text, m.pending]),
    [["user", "What's the weather?", false], ["assistant", "Sunny today.", false]],
  );
  assert.deepEqual(
    events.filter((e) => e.type === "transcript").map((e) => e.detail.message.text),
    ["What's the weather?", "Sunny today."],
  );
  transport.server({ type: "metrics", llm_ms: 300, tts_ms: 90, first_audio_ms: 700, total_ms: 1200, voice_to_voice_ms: 820 });
  assert.equal(client.metrics.voice_to_voice_ms, 820);
  assert.equal(client.metrics.stt_ms, null);
  transport.server({ type: "error", message: "LLM unavailable", code: "llm_error" });
  assert.equal(client.error, "LLM unavailable");
  assert.equal(client.errorCode, "llm_error");
  transport.server({ type: "something_new", x: 1 });
  transport.onmessage("not json");
  assert.equal(client.transcript.length, 2);
});

test("sendText works out of a call and refuses when offline", () => {
  const { client, transport } = setup();
  client.connect();
  assert.equal(client.sendText("hi"), false);
  assert.match(client.error, /Not connected/);
  transport.open();
  assert.equal(client.sendText("  hello  "), true);
  assert.deepEqual(transport.sent.at(-1), { type: "text_message", text: "hello" });
  assert.equal(client.sendText("   "), false);
});

test("ticks with an unchanged position are not re-sent; audio_config restarts the count", async () => {
  const { client, transport, engine } = setup();
  client.connect();
  transport.open();
  await client.startCall();
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  engine().play(1000);
  engine().play(1000);
  assert.equal(transport.sent.filter((m) => m.type === "playback_ack").length, 1);
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  engine().play(1000);
  assert.equal(transport.sent.filter((m) => m.type === "playback_ack").length, 2);
});

test("disconnect during a call still sends end_call and releases the audio", async () => {
  const { client, transport, engine } = setup();
  client.connect();
  transport.open();
  await client.startCall();
  client.disconnect();
  await tick();
  assert.equal(transport.types().at(-1), "end_call");
  assert.equal(client.inCall, false);
  assert.ok(engine().log.includes("close"));
});

test("__voiceStats lists live clients", () => {
  const { client, transport } = setup();
  client.connect();
  transport.open();
  const stats = globalThis.__voiceStats().find((s) => s.url === client.url && s.connection === "open");
  assert.ok(stats);
  client.disconnect();
  assert.equal(client.connection, "closed");
});
