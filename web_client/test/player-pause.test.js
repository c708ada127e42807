/**
 * Player pause / resume (the server's `playback_pause` / `playback_resume`): output stops at once, the queue and
 * the heard position are held, resume continues with the very next sample, a flush while paused drops it all, and
 * a pause nobody ends resumes by itself.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { Player } from "../lib/player.js";
import { sine, concat } from "./helpers.js";

const QUANTUM = 128;
const DECLICK = 192; // 4 ms at 48 kHz

function makePlayer(opts = {}) {
  const events = [];
  const player = new Player({ outRate: 48000, inRate: 16000, prerollMs: 0, onEvent: (e) => events.push(e), ...opts });
  const render = (quanta) => {
    const parts = [];
    for (let q = 0; q < quanta; q++) {
      const out = new Float32Array(QUANTUM);
      player.render(out);
      parts.push(out);
    }
    return concat(parts);
  };
  const of = (type) => events.filter((e) => e.type === type);
  return { player, events, render, acks: () => of("ack"), pauses: () => of("paused") };
}

const tone = (n) => Int16Array.from(sine(440, 16000, n, 0.5), (v) => Math.round(v * 32767));

test("pause: output stops within the de-click ramp, the heard position and the queue are held", () => {
  const { player, render, acks, pauses, events } = makePlayer();
  player.push(tone(16000)); // 1 s
  render(75); // 9600 outputs = 3200 input samples
  const heard = player.played;
  assert.ok(Math.abs(heard - 3200) <= 1, `heard ${heard}`);

  assert.equal(player.pause(), heard);
  assert.equal(player.paused, true);
  assert.deepEqual(acks().at(-1), { type: "ack", played: heard, received: 16000, reason: "pause" });
  assert.deepEqual(pauses(), [{ type: "paused", paused: true, reason: "pause" }]);
  assert.equal(events.filter((e) => e.type === "playing").at(-1).playing, false);

  const held = render(150); // 400 ms paused
  assert.equal(held.subarray(DECLICK).every((v) => v === 0), true, "silent after the ramp");
  assert.equal(player.played, heard, "paused audio is not played");
  const acksWhilePaused = acks().length;
  player.push(tone(1600)); // arrives while paused: queued
  render(40);
  assert.equal(player.received, 17600);
  assert.equal(player.played, heard);
  assert.equal(acks().length, acksWhilePaused, "no acks while the position does not move");
  assert.equal(player.pause(), heard, "a second pause changes nothing");
  assert.equal(pauses().length, 1);
});

test("resume continues exactly from the paused sample: the same samples as never pausing, faded in", () => {
  const a = makePlayer();
  const b = makePlayer(); // reference: never paused
  for (const p of [a, b]) p.player.push(tone(16000));
  a.render(75);
  b.render(75);
  assert.equal(a.player.played, b.player.played);

  a.player.pause();
  a.render(300); // 800 ms of silence
  a.player.push(tone(800));
  b.player.push(tone(800));
  a.player.resume();
  assert.equal(a.player.paused, false);
  assert.deepEqual(a.pauses().at(-1), { type: "paused", paused: false, reason: "resume" });

  const resumed = a.render(100);
  const reference = b.render(100);
  for (let i = 0; i < DECLICK; i++) {
    assert.ok(Math.abs(resumed[i] - (reference[i] * (i + 1)) / DECLICK) < 1e-6, `fade-in sample ${i}`);
  }
  assert.deepEqual(resumed.subarray(DECLICK), reference.subarray(DECLICK), "nothing skipped or repeated");
  assert.equal(a.player.played, b.player.played, "positions continue where they stopped");

  // Both drain at the full length of everything received.
  a.render(400);
  b.render(400);
  const drainA = a.acks().at(-1);
  assert.equal(drainA.reason, "drain");
  assert.equal(drainA.played, 16800);
  assert.equal(b.acks().at(-1).played, 16800);
});

test("interrupt (flush) while paused drops the held audio; the next reply continues the numbering", () => {
  const { player, render, acks, pauses } = makePlayer();
  player.push(tone(16000));
  render(75);
  const heard = player.pause();
  render(20);
  player.push(tone(1600)); // queued while paused
  assert.equal(player.flush(), heard, "the flush reports the paused position: nothing more was heard");
  assert.equal(acks().at(-1).reason, "flush");
  assert.equal(acks().at(-1).played, heard);
  assert.equal(acks().at(-1).received, 17600);
  assert.deepEqual(pauses().at(-1), { type: "paused", paused: false, reason: "flush" });
  assert.equal(player.paused, false);
  assert.equal(render(40).every((v) => v === 0), true, "the held audio is gone");

  player.push(tone(800)); // the next reply plays at once, without a resume
  const next = render(40);
  assert.ok(next.some((v) => v !== 0));
  assert.equal(acks().at(-1).reason, "drain");
  assert.equal(acks().at(-1).played, 18400);
});

test("a pause nobody ends resumes by itself after maxPauseMs of rendered time", () => {
  const { player, render, pauses } = makePlayer({ maxPauseMs: 3000 });
  player.push(tone(16000));
  render(75);
  const heard = player.pause();
  const quanta = (48000 * 3) / QUANTUM; // 1125
  render(quanta - 1);
  assert.equal(player.paused, true);
  assert.equal(player.played, heard);
  const out = render(1);
  assert.equal(player.paused, false);
  assert.deepEqual(pauses().at(-1), { type: "paused", paused: false, reason: "timeout" });
  assert.ok(out.some((v) => v !== 0), "plays again in the same quantum");
  assert.ok(player.played > heard);
});

test("pause before any audio, resume without a pause, and a new stream while paused", () => {
  const { player, render, pauses, acks } = makePlayer();
  player.resume();
  assert.equal(pauses().length, 0, "resume when not paused is a no-op");
  player.pause();
  assert.equal(acks().at(-1).played, 0);
  player.push(tone(1600));
  assert.equal(render(20).every((v) => v === 0), true, "audio arriving while paused waits");
  player.resume();
  assert.ok(render(20).some((v) => v !== 0));

  player.pause();
  player.configure(24000); // audio_config: a new stream is not paused
  assert.equal(player.paused, false);
  assert.deepEqual(pauses().at(-1), { type: "paused", paused: false, reason: "config" });
  player.push(new Float32Array(2400).fill(0.1));
  render(60);
  assert.equal(acks().at(-1).played, 2400);
});
