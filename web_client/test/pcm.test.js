import test from "node:test";
import assert from "node:assert/strict";
import { FramePacker, floatToInt16, int16ToFloat, bytesToInt16, frameSamplesFor, rms, mixToMono } from "../lib/pcm.js";

test("floatToInt16 scales, rounds and clamps", () => {
  const out = floatToInt16(Float32Array.from([0, 1, -1, 0.5, -0.5, 2, -3, NaN]));
  assert.deepEqual(Array.from(out), [0, 32767, -32768, 16384, -16384, 32767, -32768, 0]);
});

test("int16ToFloat inverts floatToInt16 within one LSB", () => {
  const x = Float32Array.from([0, 0.25, -0.75, 0.999]);
  const back = int16ToFloat(floatToInt16(x));
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(back[i] - x[i]) <= 2 / 32768);
});

test("bytesToInt16 reads little-endian and tolerates odd lengths and offsets", () => {
  const bytes = new Uint8Array([0x01, 0x00, 0xff, 0xff, 0x00, 0x80, 0x7f]);
  assert.deepEqual(Array.from(bytesToInt16(bytes.buffer)), [1, -1, -32768]);
  assert.deepEqual(Array.from(bytesToInt16(bytes.subarray(1, 5))), [-256, 255]);
});

test("frameSamplesFor clamps the duration to 20–100 ms", () => {
  assert.equal(frameSamplesFor(16000, 40), 640);
  assert.equal(frameSamplesFor(16000, 5), 320);
  assert.equal(frameSamplesFor(16000, 500), 1600);
});

test("FramePacker packs odd block sizes into exact frames without losing or duplicating samples", () => {
  const packer = new FramePacker(640);
  const total = 640 * 7 + 123;
  const input = new Float32Array(total);
  for (let i = 0; i < total; i++) input[i] = ((i % 2000) - 1000) / 1000; // a ramp: every sample distinct-ish
  const frames = [];
  const sizes = [1, 127, 128, 129, 333, 7, 640, 1000, 3];
  let at = 0;
  let k = 0;
  while (at < total) {
    const n = Math.min(sizes[k++ % sizes.length], total - at);
    frames.push(...packer.push(input.subarray(at, at + n)));
    at += n;
  }
  assert.equal(frames.length, 7);
  assert.equal(packer.pending, 123);
  const expected = floatToInt16(input.subarray(0, 640 * 7));
  const got = new Int16Array(640 * 7);
  frames.forEach((f, i) => {
    assert.equal(f.pcm.length, 640);
    got.set(f.pcm, i * 640);
  });
  assert.deepEqual(got, expected);
  // Frames own distinct buffers, so transferring one can't corrupt the next.
  assert.notEqual(frames[0].pcm.buffer, frames[1].pcm.buffer);
});

test("FramePacker reports each frame's RMS", () => {
  const packer = new FramePacker(4);
  const [frame] = packer.push(Float32Array.from([0.5, -0.5, 0.5, -0.5]));
  assert.ok(Math.abs(frame.rms - 0.5) < 1e-6);
  assert.ok(Math.abs(rms(Float32Array.from([3, 4])) - Math.sqrt(12.5)) < 1e-9);
});

test("mixToMono averages channels", () => {
  const m = mixToMono([Float32Array.from([1, 0]), Float32Array.from([0, 1])]);
  assert.deepEqual(Array.from(m), [0.5, 0.5]);
});
