import test from "node:test";
import assert from "node:assert/strict";
import { waterfallOf, describeWaterfall } from "../lib/waterfall.js";
import { normalizeMetrics } from "../lib/metrics.js";

const voiceTurn = normalizeMetrics({
  stt_ms: 180, first_text_ms: 3, first_text_from_speech_ms: 190, voice_to_voice_ms: 430, first_audio_ms: 243,
  llm_ms: 5, tts_ms: 220, total_ms: 1900,
});

test("a voice turn: marks from the end of speech, in order, with the text alternative", () => {
  const w = waterfallOf(voiceTurn);
  assert.equal(w.origin, "speech");
  assert.deepEqual(w.marks.map((m) => [m.label, m.ms, m.stage]), [
    ["Transcript", 180, "stt"],
    ["First text", 190, "text"],
    ["First audio", 430, "audio"],
  ]);
  assert.equal(w.total, 430);
  assert.equal(describeWaterfall(w), "Latency from end of speech: Transcript 180 ms, First text 190 ms, First audio 430 ms");
});

test("null marks are skipped; without an end of speech the marks start at the reply; nothing → null", () => {
  const noStt = waterfallOf({ ...voiceTurn, stt_ms: null });
  assert.deepEqual(noStt.marks.map((m) => m.key), ["first_text_from_speech_ms", "voice_to_voice_ms"]);
  const fromReply = waterfallOf(normalizeMetrics({ first_text_ms: 40, first_audio_ms: 300, llm_ms: 90 }));
  assert.equal(fromReply.origin, "reply");
  assert.deepEqual(fromReply.marks.map((m) => [m.label, m.ms]), [["First text", 40], ["First audio", 300]]);
  assert.match(describeWaterfall(fromReply), /^Latency from start of reply: /);
  const textOnly = waterfallOf(normalizeMetrics({ first_text_ms: 40, first_audio_ms: 0 }));
  assert.deepEqual(textOnly.marks.map((m) => m.key), ["first_text_ms"], "first_audio_ms 0 means no audio");
  assert.equal(waterfallOf(normalizeMetrics({ llm_ms: 5, total_ms: 9 })), null);
  assert.equal(waterfallOf(null), null);
});
