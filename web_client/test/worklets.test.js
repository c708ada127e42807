/**
 * Loads the real worklet files in node with a minimal stand-in for the AudioWorkletGlobalScope, to check
 * the glue between the Web Audio API and the tested modules (message formats, transfer, output writing).
 */
import test from "node:test";
import assert from "node:assert/strict";

const registered = new Map();
globalThis.sampleRate = 48000;
globalThis.registerProcessor = (name, cls) => registered.set(name, cls);
globalThis.AudioWorkletProcessor = class {
  constructor() {
    const posted = [];
    this.posted = posted;
    this.port = {
      onmessage: null,
      postMessage: (msg, transfer) => posted.push({ msg, transfer }),
    };
  }
};

await import("../capture-worklet.js");
await import("../playback-worklet.js");

const send = (proc, data) => proc.port.onmessage({ data });

test("both processors register under their names", () => {
  assert.ok(registered.has("voice-capture"));
  assert.ok(registered.has("voice-playback"));
});

test("capture: 128-frame quanta at 48 kHz → transferred 40 ms int16 frames with levels", () => {
  const Capture = registered.get("voice-capture");
  const proc = new Capture({ processorOptions: { frameMs: 40 } });
  const block = new Float32Array(128).fill(0.25);
  for (let i = 0; i < 150; i++) assert.equal(proc.process([[block]], [[new Float32Array(128)]]), true); // 400 ms
  const frames = proc.posted.filter((p) => p.msg.type === "frame");
  assert.equal(frames.length, 9); // 400 ms minus the resampler's ~1.5 ms look-ahead
  for (const { msg, transfer } of frames) {
    assert.equal(msg.pcm.byteLength, 1280);
    assert.deepEqual(transfer, [msg.pcm]);
  }
  assert.ok(Math.abs(frames[5].msg.rms - 0.25) < 0.01);
  assert.equal(proc.process([[]], []), true, "no input channels: keeps running");
  // Stereo input is mixed down.
  proc.process([[block, new Float32Array(128)]], []);
});

test("playback: config, audio, render, acks, flush round trip", () => {
  const Playback = registered.get("voice-playback");
  const proc = new Playback({ processorOptions: { prerollMs: 0, ackIntervalMs: 200 } });
  send(proc, { type: "config", sampleRate: 16000, stream: 7 });
  const pcm = new Int16Array(16000).fill(8000); // 1 s
  send(proc, { type: "audio", pcm: pcm.buffer });
  const out = [new Float32Array(128), new Float32Array(128)];
  for (let i = 0; i < 150; i++) proc.process([], [out]); // 400 ms
  assert.ok(Math.abs(out[0][64] - 8000 / 32768) < 1e-3, "plays the samples");
  assert.deepEqual(out[1], out[0], "every output channel gets the signal");
  const acks = proc.posted.map((p) => p.msg).filter((m) => m.type === "ack");
  assert.ok(acks.length >= 1 && acks.every((a) => a.stream === 7));
  send(proc, { type: "flush", id: 3 });
  const [ack, flushed] = proc.posted.slice(-2).map((p) => p.msg);
  assert.equal(ack.reason, "flush");
  assert.equal(flushed.type, "flushed");
  assert.equal(flushed.id, 3);
  assert.equal(flushed.played, ack.played);
  assert.ok(Math.abs(flushed.played - 6400) <= 1, `heard ${flushed.played} of 16000`);
  send(proc, { type: "discard", samples: 320 });
  send(proc, { type: "audio", pcm: new Int16Array(160).fill(8000).buffer });
  for (let i = 0; i < 40; i++) proc.process([], [out]);
  const drain = proc.posted.map((p) => p.msg).filter((m) => m.type === "ack").at(-1);
  assert.equal(drain.reason, "drain");
  assert.equal(drain.played, 16480, "flushed + discarded samples count as passed");
});

test("playback: pause and resume messages hold and continue the stream; maxPauseMs reaches the Player", () => {
  const Playback = registered.get("voice-playback");
  const proc = new Playback({ processorOptions: { prerollMs: 0, maxPauseMs: 100 } });
  send(proc, { type: "config", sampleRate: 16000, stream: 2 });
  send(proc, { type: "audio", pcm: new Int16Array(16000).fill(8000).buffer });
  const out = [new Float32Array(128)];
  for (let i = 0; i < 75; i++) proc.process([], [out]);
  send(proc, { type: "pause" });
  const msgs = () => proc.posted.map((p) => p.msg);
  const pauseAck = msgs().findLast((m) => m.type === "ack");
  assert.equal(pauseAck.reason, "pause");
  assert.ok(Math.abs(pauseAck.played - 3200) <= 1);
  assert.deepEqual(msgs().findLast((m) => m.type === "paused"), { type: "paused", paused: true, reason: "pause", stream: 2 });
  for (let i = 0; i < 10; i++) proc.process([], [out]);
  assert.equal(out[0].every((v) => v === 0), true);
  send(proc, { type: "resume" });
  proc.process([], [out]);
  proc.process([], [out]); // past the 4 ms fade-in
  assert.ok(Math.abs(out[0][127] - 8000 / 32768) < 1e-3, "plays again");
  send(proc, { type: "pause" });
  for (let i = 0; i < 40; i++) proc.process([], [out]); // 107 ms > maxPauseMs
  assert.equal(msgs().findLast((m) => m.type === "paused").reason, "timeout");
});
