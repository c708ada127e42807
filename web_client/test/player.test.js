import test from "node:test";
import assert from "node:assert/strict";
import { Player } from "../lib/player.js";
import { sine, concat, toneAmplitude, db } from "./helpers.js";

const QUANTUM = 128;

function makePlayer(opts = {}) {
  const events = [];
  const player = new Player({ outRate: 48000, inRate: 16000, prerollMs: 80, onEvent: (e) => events.push(e), ...opts });
  const render = (quanta) => {
    const parts = [];
    for (let q = 0; q < quanta; q++) {
      const out = new Float32Array(QUANTUM);
      player.render(out);
      parts.push(out);
    }
    return concat(parts);
  };
  return { player, events, render, acks: () => events.filter((e) => e.type === "ack") };
}

const int16Tone = (n, freq = 440, rate = 16000) =>
  Int16Array.from(sine(freq, rate, n, 0.5), (v) => Math.round(v * 32767));

test("plays nothing until the pre-roll (80 ms) is buffered", () => {
  const { player, render } = makePlayer();
  player.push(int16Tone(640)); // 40 ms
  const out = render(10); // ~27 ms: well within the 80 ms wait
  assert.equal(out.every((v) => v === 0), true);
  assert.equal(player.playing, false);
  player.push(int16Tone(1280)); // now 120 ms queued
  const more = render(2);
  assert.ok(more.some((v) => v !== 0));
  assert.equal(player.playing, true);
});

test("resamples 16k → 48k gaplessly: a tone split into odd-sized network chunks comes out clean", () => {
  const { player, render } = makePlayer();
  const tone = int16Tone(16000, 440); // 1 s
  const sizes = [320, 1600, 17, 800, 333];
  for (let at = 0, k = 0; at < tone.length; ) {
    const n = Math.min(sizes[k++ % sizes.length], tone.length - at);
    player.push(tone.subarray(at, at + n));
    at += n;
  }
  const out = render(Math.ceil(48000 / QUANTUM) + 40);
  const start = out.findIndex((v) => v !== 0);
  const body = out.subarray(start + 2400, start + 45600);
  assert.ok(Math.abs(db(toneAmplitude(body, 440, 48000) / 0.5)) < 0.1);
  // No dropouts inside the tone: a gap would show up as a run of zeros.
  let run = 0;
  for (const v of body) {
    run = v === 0 ? run + 1 : 0;
    assert.ok(run < 3);
  }
});

test("reports played positions in server-rate samples, every ~200 ms, and the full length on drain", () => {
  const { player, events, render, acks } = makePlayer();
  player.push(int16Tone(8000)); // 0.5 s at 16k
  render(Math.ceil((48000 * 0.8) / QUANTUM));
  const ticks = acks().filter((a) => a.reason === "tick");
  assert.ok(ticks.length >= 2 && ticks.length <= 3, `${ticks.length} tick acks`);
  for (let i = 1; i < ticks.length; i++) {
    const delta = ticks[i].played - ticks[i - 1].played;
    assert.ok(Math.abs(delta - 3200) <= 64, `ticks ~200 ms apart (${delta} samples)`);
  }
  const drain = acks().find((a) => a.reason === "drain");
  assert.ok(drain, "a drain ack");
  assert.equal(drain.played, 8000);
  assert.equal(drain.received, 8000);
  assert.deepEqual(
    events.filter((e) => e.type === "playing").map((e) => e.playing),
    [true, false],
  );
});

test("the played position tracks rendered output exactly (not what the resampler has read ahead)", () => {
  const { player, render } = makePlayer({ prerollMs: 0 });
  player.push(int16Tone(16000));
  render(10); // 1280 outputs at 48k = 426.67 input samples
  assert.ok(Math.abs(player.played - 1280 / 3) <= 1, `played ${player.played}`);
});

test("flush stops instantly, acks what was heard, and later audio continues the position", () => {
  const { player, events, render, acks } = makePlayer({ prerollMs: 0 });
  player.push(int16Tone(16000)); // 1 s queued
  render(75); // 9600 outputs = 3200 input samples = 200 ms
  const heard = player.played;
  assert.ok(Math.abs(heard - 3200) <= 1);
  const returned = player.flush();
  assert.equal(returned, heard);
  const flushAck = acks().at(-1);
  assert.equal(flushAck.reason, "flush");
  assert.equal(flushAck.played, heard);
  assert.equal(flushAck.received, 16000);
  assert.equal(events.filter((e) => e.type === "playing").at(-1).playing, false);

  // Instant: after a few ms of de-click ramp, silence.
  const after = render(4);
  assert.equal(after.subarray(200).every((v) => v === 0), true);
  assert.ok(Math.abs(after[0]) <= 0.5, "the ramp starts at (or below) the last level, no jump up");
  assert.equal(player.played, heard, "nothing more was heard");

  // New audio (the next reply): positions continue past the discarded 12800 samples.
  player.push(int16Tone(1600));
  render(60);
  const drain = acks().at(-1);
  assert.equal(drain.reason, "drain");
  assert.equal(drain.played, 17600);
  assert.equal(drain.received, 17600);
});

test("configure() starts a new stream: positions restart at 0 at the new rate", () => {
  const { player, render, acks } = makePlayer({ prerollMs: 0 });
  player.push(int16Tone(1600));
  render(60);
  player.configure(24000);
  assert.equal(player.played, 0);
  assert.equal(player.received, 0);
  player.push(int16Tone(2400, 440, 24000));
  render(60);
  assert.equal(acks().at(-1).played, 2400);
});

test("a mid-stream network stall drains, re-pre-rolls, and keeps counting", () => {
  const { player, render, acks } = makePlayer({ prerollMs: 20 });
  player.push(int16Tone(800)); // 50 ms
  render(40); // ~107 ms: plays it all and drains
  assert.equal(acks().at(-1).reason, "drain");
  assert.equal(acks().at(-1).played, 800);
  player.push(int16Tone(800));
  render(40);
  assert.equal(acks().at(-1).played, 1600);
});

test("downsampling playback (e.g. 24k server → 16k context) still acks the full stream on drain", () => {
  const events = [];
  const player = new Player({ outRate: 16000, inRate: 24000, prerollMs: 0, onEvent: (e) => events.push(e) });
  player.push(new Float32Array(2401).fill(0.1));
  for (let i = 0; i < 30; i++) player.render(new Float32Array(QUANTUM));
  const drain = events.filter((e) => e.type === "ack").at(-1);
  assert.equal(drain.reason, "drain");
  assert.equal(drain.played, 2401);
});

test("discard: stale audio after a barge-in is skipped but keeps the numbering", () => {
  const { player, render, acks } = makePlayer({ prerollMs: 0 });
  player.push(int16Tone(16000));
  render(75); // ~3200 heard
  const heard = player.flush();
  player.discard(1600); // arrived after the flush, before the server stopped
  const silent = render(40);
  assert.equal(silent.subarray(300).every((v) => v === 0), true, "discarded audio is not played");
  assert.equal(player.played, heard);
  assert.equal(player.received, 17600);
  player.push(int16Tone(800)); // next reply
  render(40);
  assert.equal(acks().at(-1).reason, "drain");
  assert.equal(acks().at(-1).played, 18400);
});
