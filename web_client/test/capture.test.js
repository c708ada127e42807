import test from "node:test";
import assert from "node:assert/strict";
import { CapturePipeline } from "../lib/capture.js";
import { sine } from "./helpers.js";

for (const rate of [48000, 44100, 16000]) {
  test(`capture at ${rate} Hz: 128-sample quanta become 40 ms frames of 16 kHz int16`, () => {
    const cap = new CapturePipeline({ inRate: rate });
    const input = sine(500, rate, rate * 2, 0.5); // 2 s
    const frames = [];
    for (let at = 0; at + 128 <= input.length; at += 128) frames.push(...cap.process(input.subarray(at, at + 128)));
    assert.ok(frames.length >= 48 && frames.length <= 50, `${frames.length} frames`);
    for (const f of frames) assert.equal(f.pcm.length, 640);
    const mid = frames[25];
    assert.ok(Math.abs(mid.rms - 0.5 / Math.SQRT2) < 0.01, `rms ${mid.rms}`);
    const peak = Math.max(...mid.pcm.map(Math.abs));
    assert.ok(Math.abs(peak / 32767 - 0.5) < 0.01, `peak ${peak}`);
  });
}

test("frame duration option is honoured and clamped", () => {
  assert.equal(new CapturePipeline({ inRate: 48000, frameMs: 20 }).packer.frameSamples, 320);
  assert.equal(new CapturePipeline({ inRate: 48000, frameMs: 1000 }).packer.frameSamples, 1600);
});
