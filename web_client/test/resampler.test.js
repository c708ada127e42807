import test from "node:test";
import assert from "node:assert/strict";
import { StreamingResampler } from "../lib/resampler.js";
import { sine, inBlocks, concat, toneAmplitude, rmsOf, db } from "./helpers.js";

function oneShot(rs, input) {
  return concat([Float32Array.from(rs.process(input)), Float32Array.from(rs.flush())]);
}

test("48k → 16k keeps a 1 kHz tone's amplitude", () => {
  const rs = new StreamingResampler({ inRate: 48000, outRate: 16000 });
  const out = oneShot(rs, sine(1000, 48000, 48000, 0.5));
  const amp = toneAmplitude(out, 1000, 16000, 1600, 14400); // skip the edges
  assert.ok(Math.abs(db(amp / 0.5)) < 0.1, `gain ${db(amp / 0.5).toFixed(3)} dB`);
  assert.equal(out.length, 16000);
});

test("48k → 16k attenuates a 12 kHz tone (which would alias to 4 kHz) by at least 40 dB", () => {
  const rs = new StreamingResampler({ inRate: 48000, outRate: 16000 });
  const out = oneShot(rs, sine(12000, 48000, 48000, 0.5));
  const level = rmsOf(out, 1600, 14400) * Math.SQRT2; // all that is left, at any frequency
  const alias = toneAmplitude(out, 4000, 16000, 1600, 14400);
  assert.ok(db(level / 0.5) <= -40, `residual ${db(level / 0.5).toFixed(1)} dB`);
  assert.ok(db(alias / 0.5) <= -40, `alias ${db(alias / 0.5).toFixed(1)} dB`);
});

test("44.1k → 16k (non-integer ratio) passes 1 kHz and rejects 11 kHz", () => {
  const pass = oneShot(new StreamingResampler({ inRate: 44100, outRate: 16000 }), sine(1000, 44100, 44100, 0.5));
  assert.ok(Math.abs(db(toneAmplitude(pass, 1000, 16000, 1600, 14400) / 0.5)) < 0.1);
  const stop = oneShot(new StreamingResampler({ inRate: 44100, outRate: 16000 }), sine(11000, 44100, 44100, 0.5));
  assert.ok(db((rmsOf(stop, 1600, 14400) * Math.SQRT2) / 0.5) <= -40);
});

test("16k → 48k (playback direction) keeps amplitude and adds no images above 8 kHz", () => {
  const rs = new StreamingResampler({ inRate: 16000, outRate: 48000 });
  const out = oneShot(rs, sine(1000, 16000, 16000, 0.5));
  assert.equal(out.length, 48000);
  assert.ok(Math.abs(db(toneAmplitude(out, 1000, 48000, 4800, 43200) / 0.5)) < 0.1);
  // The first image of 1 kHz at 16k→48k sits at 15 kHz.
  assert.ok(db(toneAmplitude(out, 15000, 48000, 4800, 43200) / 0.5) <= -60);
});

for (const [inRate, outRate] of [
  [48000, 16000],
  [44100, 16000],
  [16000, 48000],
  [24000, 44100],
  [22050, 16000],
]) {
  test(`${inRate} → ${outRate}: block-by-block output equals one-shot output (state carries across blocks)`, () => {
    const input = sine(440, inRate, Math.round(inRate * 0.3), 0.6);
    for (let i = 0; i < input.length; i++) input[i] += 0.2 * Math.sin(i * 0.37); // something broadband
    const whole = oneShot(new StreamingResampler({ inRate, outRate }), input);
    const rs = new StreamingResampler({ inRate, outRate });
    const blocked = concat([inBlocks(input, [128, 1, 127, 333, 128, 2, 4096], (b) => rs.process(b)), Float32Array.from(rs.flush())]);
    assert.equal(blocked.length, whole.length);
    assert.equal(whole.length, Math.ceil((input.length * outRate) / inRate));
    let maxDiff = 0;
    for (let i = 0; i < whole.length; i++) maxDiff = Math.max(maxDiff, Math.abs(whole[i] - blocked[i]));
    assert.equal(maxDiff, 0);
    // And no discontinuity anywhere: no sample-to-sample step exceeds what the signal's own slope allows
    // (amplitude × angular frequency per output sample, per component, plus 5% for filter ripple).
    const w1 = (2 * Math.PI * 440) / outRate;
    const w2 = (0.37 * inRate) / outRate;
    const bound = 1.05 * (0.6 * w1 + 0.2 * w2);
    // (The stream's abrupt start and end ring a little, as any band-limited step does: skip those.)
    const edge = Math.round(0.05 * blocked.length);
    let maxStep = 0;
    for (let i = edge; i < blocked.length - edge; i++) maxStep = Math.max(maxStep, Math.abs(blocked[i] - blocked[i - 1]));
    assert.ok(maxStep < bound, `max step ${maxStep} > ${bound}`);
  });
}

test("128-sample blocks at 48k produce a steady 1 kHz sine without clicks at block borders", () => {
  const rs = new StreamingResampler({ inRate: 48000, outRate: 16000 });
  const out = inBlocks(sine(1000, 48000, 48000, 0.5), [128], (b) => rs.process(b));
  const ideal = sine(1000, 16000, out.length, 0.5);
  let maxErr = 0;
  for (let i = 200; i < out.length; i++) maxErr = Math.max(maxErr, Math.abs(out[i] - ideal[i]));
  assert.ok(maxErr < 0.005, `max error vs ideal ${maxErr}`);
});

test("equal rates pass samples through untouched", () => {
  const rs = new StreamingResampler({ inRate: 16000, outRate: 16000 });
  const x = sine(300, 16000, 100);
  assert.deepEqual(Array.from(rs.process(x)), Array.from(x));
  assert.equal(rs.pending, 0);
});

test("pending counts look-ahead held back; flush releases it and resets", () => {
  const rs = new StreamingResampler({ inRate: 16000, outRate: 48000 });
  const out = rs.process(new Float32Array(100).fill(0.1));
  assert.equal(rs.pending, rs.reach);
  assert.equal(out.length, (100 - rs.reach) * 3);
  const tail = rs.flush();
  assert.equal(tail.length, rs.reach * 3);
  assert.equal(rs.inputCount, 0);
  assert.equal(rs.pending, 0);
});

test("rejects non-integer rates", () => {
  assert.throws(() => new StreamingResampler({ inRate: 44100.5, outRate: 16000 }), RangeError);
});
