/**
 * `playback_pause` / `playback_resume` through VoiceClient, with the real playback logic (a Player run
 * synchronously behind the AudioEngine contract): what the server is told (`playback_ack`) before, during and
 * after a pause, and what the user hears.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { PlayerEngine, setup, tick } from "./client-fakes.js";

/** A client in a call at 16 kHz whose agent audio goes through a real Player; 1 s of a tone queued. */
async function inCall(extra = {}) {
  let engine = null;
  const env = setup({ createAudioEngine: (opts) => (engine = new PlayerEngine(opts)), prerollMs: 0, ...extra });
  const { client, transport } = env;
  const pauses = [];
  client.addEventListener("playbackpause", (e) => pauses.push(e.detail));
  const customs = [];
  client.addEventListener("custommessage", (e) => customs.push(e.detail.message));
  client.connect();
  transport.open();
  await client.startCall();
  transport.server({ type: "audio_config", format: "pcm16", sampleRate: 16000 });
  transport.server({ type: "status", status: "speaking" });
  transport.server({ type: "transcript_start", role: "assistant" });
  transport.server({ type: "transcript_delta", text: "Once upon a time there was a long story." });
  transport.audio(new Array(16000).fill(4000));
  const acks = () => transport.sent.filter((m) => m.type === "playback_ack").map((m) => m.played_samples);
  return { ...env, engine, pauses, customs, acks };
}

test("pause holds the position; audio sent meanwhile is queued; resume plays on from the same sample", async () => {
  const { client, transport, engine, pauses, customs, acks } = await inCall();
  engine.render(200); // 200 ms = 3200 samples heard
  const heard = engine.player.played;
  assert.ok(Math.abs(heard - 3200) <= 1, `heard ${heard}`);

  transport.server({ type: "playback_pause" });
  assert.equal(client.paused, true);
  assert.equal(client.playing, false);
  assert.equal(acks().at(-1), heard, "the pause is acked at once with the exact position");
  assert.deepEqual(pauses, [{ paused: true, reason: "pause" }]);

  const silent = engine.render(500);
  assert.equal(silent.subarray(192).every((v) => v === 0), true, "output stopped");
  transport.audio(new Array(1600).fill(4000)); // the server kept streaming: queued, not dropped
  engine.render(500);
  assert.equal(engine.player.played, heard, "paused audio is not played");
  assert.equal(acks().at(-1), heard, "no ack claims more than was heard");
  assert.equal(client.stats.samplesDiscarded, 0);

  transport.server({ type: "playback_resume" });
  assert.equal(client.paused, false);
  assert.deepEqual(pauses.at(-1), { paused: false, reason: "resume" });
  const resumed = engine.render(100);
  const expected = heard + resumed.length / 3; // 48 kHz out, 16 kHz in
  assert.ok(Math.abs(engine.player.played - expected) <= 1, `resumed from the paused sample: ${engine.player.played}`);
  engine.render(1200); // the rest, then drain
  assert.equal(acks().at(-1), 17600, "everything received was played, nothing skipped");
  assert.equal(client.transcript.at(-1).interrupted, false);
  assert.deepEqual(customs, [], "neither message is an app message");
  assert.equal(client.stats.pauses, 1);
});

test("interrupt while paused: the held audio is dropped, the position stays, the reply is marked interrupted", async () => {
  const { client, transport, engine, acks } = await inCall();
  engine.render(300);
  transport.server({ type: "playback_pause" });
  const heard = engine.player.played;
  engine.render(300);
  transport.server({ type: "playback_interrupt" });
  await tick();
  assert.equal(client.paused, false);
  assert.equal(acks().at(-1), heard, "the flush ack repeats the paused position");
  assert.equal(engine.render(300).every((v) => v === 0), true, "nothing of the held reply plays");
  assert.equal(client.transcript.at(-1).interrupted, true);

  transport.server({ type: "status", status: "speaking" }); // the next reply continues the numbering
  transport.audio(new Array(800).fill(4000));
  engine.render(200);
  assert.equal(acks().at(-1), 16800);
});

test("a pause never followed by resume or interrupt resumes by itself after pauseTimeoutMs", async () => {
  const { client, transport, engine, pauses } = await inCall({ pauseTimeoutMs: 1000 });
  engine.render(100);
  transport.server({ type: "playback_pause" });
  const heard = engine.player.played;
  engine.render(960);
  assert.equal(client.paused, true);
  assert.equal(engine.player.played, heard);
  engine.render(100);
  assert.equal(client.paused, false);
  assert.deepEqual(pauses.at(-1), { paused: false, reason: "timeout" });
  assert.ok(engine.player.played > heard);
  assert.equal(client.stats.pauseTimeouts, 1);
});

test("pause and resume without a call or with playback off are harmless", async () => {
  const { client, transport } = setup({ playback: false });
  client.connect();
  transport.open();
  transport.server({ type: "playback_pause" });
  transport.server({ type: "playback_resume" });
  assert.equal(client.paused, false);
  await client.startCall();
  transport.server({ type: "playback_pause" });
  assert.equal(client.paused, false, "dictation plays nothing, so nothing to hold");
  assert.equal(transport.sent.some((m) => m.type === "playback_ack"), false);
});
