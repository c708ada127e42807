/**
 * Per-turn latency metrics from the server's `metrics` message, normalised (missing → null), and a short
 * human-readable summary for the widget.
 *
 * @module metrics
 */

/** Fields the server may send, all in milliseconds. */
export const METRIC_FIELDS = [
  "stt_ms",
  "llm_ms",
  "first_text_ms",
  "tts_ms",
  "first_audio_ms",
  "voice_to_voice_ms",
  "total_ms",
  "tts_first_audio_ms",
  "first_text_from_speech_ms",
];

/**
 * @typedef {Record<string, number | null>} VoiceMetrics keys from {@link METRIC_FIELDS}
 */

/**
 * @param {Record<string, unknown>} msg a `metrics` message
 * @returns {VoiceMetrics}
 */
export function normalizeMetrics(msg) {
  /** @type {VoiceMetrics} */
  const out = {};
  for (const key of METRIC_FIELDS) {
    const v = msg?.[key];
    out[key] = typeof v === "number" && Number.isFinite(v) ? v : null;
  }
  return out;
}

/**
 * The single number that best describes how long the user waited: voice-to-voice if the server measured
 * it, else time to first audio, else total.
 * @param {VoiceMetrics | null} m
 * @returns {number | null}
 */
export function headlineLatency(m) {
  if (!m) return null;
  return m.voice_to_voice_ms ?? m.first_audio_ms ?? m.total_ms ?? null;
}

/**
 * e.g. "STT 120 ms · LLM 310 ms · TTS 95 ms"; empty string when there is nothing to show.
 * @param {VoiceMetrics | null} m
 */
export function describeStages(m) {
  if (!m) return "";
  const parts = [];
  const add = (label, v) => v !== null && v !== undefined && parts.push(`${label} ${Math.round(v)} ms`);
  add("STT", m.stt_ms);
  add("LLM", m.llm_ms);
  add("TTS", m.tts_ms);
  return parts.join(" · ");
}
