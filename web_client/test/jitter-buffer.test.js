import test from "node:test";
import assert from "node:assert/strict";
import { JitterBuffer } from "../lib/jitter-buffer.js";

const ramp = (from, n) => Float32Array.from({ length: n }, (_, i) => from + i);

test("holds back until the pre-roll is queued, then plays", () => {
  const jb = new JitterBuffer({ prerollSamples: 100 });
  const dst = new Float32Array(64);
  jb.push(ramp(0, 60));
  assert.equal(jb.read(dst), 0);
  assert.equal(jb.started, false);
  jb.push(ramp(60, 60));
  assert.equal(jb.read(dst), 64);
  assert.equal(jb.started, true);
  assert.equal(dst[0], 0);
  assert.equal(dst[63], 63);
});

test("starts anyway once it has waited the pre-roll duration (short replies still play)", () => {
  const jb = new JitterBuffer({ prerollSamples: 100 });
  const dst = new Float32Array(10);
  jb.tick(64); // nothing queued: the wait clock doesn't run
  jb.push(ramp(0, 30));
  jb.tick(64);
  assert.equal(jb.read(dst), 0);
  jb.tick(64); // 128 ≥ 100 waited
  assert.equal(jb.read(dst), 10);
});

test("reads are gapless across chunk borders and come up short only when dry", () => {
  const jb = new JitterBuffer({ prerollSamples: 0 });
  jb.push(ramp(0, 5));
  jb.push(ramp(5, 3));
  jb.push(ramp(8, 7));
  const dst = new Float32Array(20);
  assert.equal(jb.read(dst, 6), 6);
  assert.equal(jb.read(dst, 20, 6), 9);
  assert.deepEqual(Array.from(dst.subarray(0, 15)), Array.from(ramp(0, 15)));
  assert.equal(jb.buffered, 0);
  assert.equal(jb.drains, 1);
});

test("pre-rolls again after running dry", () => {
  const jb = new JitterBuffer({ prerollSamples: 50 });
  const dst = new Float32Array(100);
  jb.push(ramp(0, 50));
  assert.equal(jb.read(dst), 50);
  jb.push(ramp(50, 20));
  assert.equal(jb.read(dst), 0, "20 < 50 queued: wait");
  jb.push(ramp(70, 30));
  assert.equal(jb.read(dst), 50);
});

test("counts received and played positions", () => {
  const jb = new JitterBuffer({ prerollSamples: 0 });
  const dst = new Float32Array(30);
  jb.push(ramp(0, 100));
  assert.equal(jb.received, 100);
  assert.equal(jb.played, 0);
  jb.read(dst, 30);
  assert.equal(jb.played, 30);
  jb.read(dst, 25);
  assert.equal(jb.played, 55);
  assert.equal(jb.head, 55);
});

test("flush drops the queue instantly and keeps the heard position", () => {
  const jb = new JitterBuffer({ prerollSamples: 0 });
  const dst = new Float32Array(1000);
  jb.push(ramp(0, 1000));
  jb.read(dst, 300);
  assert.equal(jb.flush(), 300, "ack right after a flush reports what was heard");
  assert.equal(jb.played, 300);
  assert.equal(jb.buffered, 0);
  assert.equal(jb.read(dst), 0);
  assert.equal(jb.played, 300);
});

test("samples discarded by a flush count as passed once later samples play", () => {
  const jb = new JitterBuffer({ prerollSamples: 0 });
  const dst = new Float32Array(1000);
  jb.push(ramp(0, 1000));
  jb.read(dst, 300);
  jb.flush(); // 700 discarded
  jb.push(ramp(1000, 200));
  assert.equal(jb.read(dst, 1), 1);
  assert.equal(dst[0], 1000, "the first sample after the flush is the first new one");
  assert.equal(jb.played, 1001, "position is in the stream of everything received, discarded included");
  jb.read(dst, 199);
  assert.equal(jb.played, 1200);
  assert.equal(jb.received, 1200);
});

test("reset starts a new stream at position 0", () => {
  const jb = new JitterBuffer({ prerollSamples: 0 });
  jb.push(ramp(0, 10));
  jb.read(new Float32Array(10));
  jb.reset();
  assert.equal(jb.received, 0);
  assert.equal(jb.played, 0);
});

test("skip counts stale samples as received-and-discarded", () => {
  const jb = new JitterBuffer({ prerollSamples: 0 });
  const dst = new Float32Array(100);
  jb.push(ramp(0, 100));
  jb.read(dst, 40);
  jb.flush();
  jb.skip(30); // in flight when the user barged in
  assert.equal(jb.received, 130);
  assert.equal(jb.played, 40);
  jb.push(ramp(130, 10));
  jb.read(dst, 10);
  assert.equal(dst[0], 130);
  assert.equal(jb.played, 140);
});
