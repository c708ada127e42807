import test from "node:test";
import assert from "node:assert/strict";
import { SpeechDetector } from "../lib/speech-detector.js";

test("speech start/end hints with a silence hangover", () => {
  const d = new SpeechDetector({ silenceThreshold: 0.04, silenceMs: 500 });
  assert.equal(d.update(0.01, 40, false).speechStart, false);
  assert.equal(d.update(0.2, 40, false).speechStart, true);
  assert.equal(d.update(0.2, 40, false).speechStart, false);
  let ended = 0;
  for (let i = 0; i < 20; i++) if (d.update(0.0, 40, false).speechEnd) ended = ended || i + 1;
  assert.equal(ended, 13, "ends once 500 ms of silence have passed (13 frames of 40 ms)");
  assert.equal(d.speaking, false);
});

test("barge-in needs enough loud frames while the agent is playing", () => {
  const d = new SpeechDetector({ interruptThreshold: 0.05, interruptMs: 160 });
  const loud = (playing) => d.update(0.3, 40, playing).bargeIn;
  const quiet = (playing) => d.update(0.0, 40, playing).bargeIn;
  assert.equal([loud(false), loud(false), loud(false), loud(false), loud(false)].some(Boolean), false, "not while the agent is silent");
  assert.deepEqual([loud(true), loud(true), loud(true), loud(true)], [false, false, false, true]);
});

test("barge-in tolerates the dips between syllables", () => {
  const d = new SpeechDetector({ interruptThreshold: 0.05, interruptMs: 160 });
  // loud, loud, dip, loud, loud: 160 ms of speech within 200 ms
  const seq = [0.3, 0.3, 0.01, 0.3, 0.3].map((lvl) => d.update(lvl, 40, true).bargeIn);
  assert.deepEqual(seq, [false, false, false, false, true]);
});

test("short bursts (clicks, residual echo) don't trigger a barge-in", () => {
  const d = new SpeechDetector({ interruptThreshold: 0.05, interruptMs: 160 });
  const levels = [0.3, 0, 0, 0, 0, 0.3, 0, 0, 0, 0, 0.3, 0.3, 0, 0, 0, 0, 0, 0.3, 0, 0];
  assert.equal(levels.some((lvl) => d.update(lvl, 40, true).bargeIn), false);
});

test("agent silence clears the barge-in evidence", () => {
  const d = new SpeechDetector({ interruptThreshold: 0.05, interruptMs: 160 });
  d.update(0.3, 40, true);
  d.update(0.3, 40, true);
  d.update(0.3, 40, true);
  d.update(0.3, 40, false); // playback stopped
  assert.equal(d.update(0.3, 40, true).bargeIn, false);
});
