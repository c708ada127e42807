/**
 * The latency waterfall of one assistant turn, from the server's `metrics` message: where the time went between the
 * end of the user's speech and the first audio of the reply. `<voice-agent show-metrics>` draws one under each
 * reply that has metrics.
 *
 * Voice turns are measured from the end of the user's speech (0): final transcript (`stt_ms`), first reply text
 * (`first_text_from_speech_ms`), first audio (`voice_to_voice_ms`). When the server could not time the end of speech,
 * the same marks are drawn from the start of the reply instead (`first_text_ms`, `first_audio_ms`). Marks the
 * server left null are skipped; with none, there is no waterfall.
 *
 * @module waterfall
 */

/** @typedef {{key: string, label: string, stage: "stt" | "text" | "audio", ms: number}} WaterfallMark */
/** @typedef {{origin: "speech" | "reply", marks: WaterfallMark[], total: number}} Waterfall */

const FROM_SPEECH = [
  ["stt_ms", "Transcript", "stt"],
  ["first_text_from_speech_ms", "First text", "text"],
  ["voice_to_voice_ms", "First audio", "audio"],
];
const FROM_REPLY = [
  ["first_text_ms", "First text", "text"],
  ["first_audio_ms", "First audio", "audio"],
];
const ORIGIN_LABEL = { speech: "end of speech", reply: "start of reply" };

const usable = (v) => typeof v === "number" && Number.isFinite(v) && v >= 0;

/**
 * The marks to draw for `metrics`, or null when there is nothing to draw.
 * @param {import("./metrics.js").VoiceMetrics | null} metrics
 * @returns {Waterfall | null}
 */
export function waterfallOf(metrics) {
  if (!metrics) return null;
  const fromSpeech = FROM_SPEECH.some(([key]) => usable(metrics[key]));
  const origin = fromSpeech ? "speech" : "reply";
  const marks = (fromSpeech ? FROM_SPEECH : FROM_REPLY)
    // first_audio_ms is 0 when the reply sent no audio (a text reply): not a mark.
    .filter(([key]) => usable(metrics[key]) && !(key === "first_audio_ms" && metrics[key] === 0))
    .map(([key, label, stage]) => ({ key, label, stage, ms: metrics[key] }));
  if (!marks.length) return null;
  return { origin, marks, total: Math.max(...marks.map((m) => m.ms)) };
}

/**
 * The text alternative, e.g. "Latency from end of speech: Transcript 120 ms, First text 340 ms, First audio 820 ms".
 * @param {Waterfall} w
 */
export function describeWaterfall(w) {
  return `Latency from ${ORIGIN_LABEL[w.origin]}: ${w.marks.map((m) => `${m.label} ${Math.round(m.ms)} ms`).join(", ")}`;
}

/** Styles for {@link renderWaterfall}'s markup (uses the widget's `--_*` theme variables). */
export const WATERFALL_CSS = `
figure.waterfall { margin: 0.45em 0 0.1em; font-size: 0.75em; color: var(--_muted); }
figure.waterfall figcaption { margin-bottom: 0.15em; }
figure.waterfall ol { list-style: none; margin: 0; padding: 0; display: grid; gap: 0.15em; }
figure.waterfall li { display: grid; grid-template-columns: 5.5em minmax(4rem, 1fr) 4.2em; align-items: center; gap: 0.4em; }
figure.waterfall .track { position: relative; height: 0.55em; background: var(--_border); border-radius: 2px; }
figure.waterfall .bar { position: absolute; top: 0; bottom: 0; border-radius: 2px; min-width: 2px; }
figure.waterfall .wf-stt .bar { background: var(--_listening); }
figure.waterfall .wf-text .bar { background: var(--_thinking); }
figure.waterfall .wf-audio .bar { background: var(--_speaking); }
figure.waterfall .ms { text-align: right; font-variant-numeric: tabular-nums; }
`;

/**
 * A `<figure class="waterfall">` for one turn: one row per mark, with its label, a bar from the previous mark to this
 * one on a shared time axis, and the time in ms. The figure's `aria-label` is the text alternative; the rows are
 * hidden from assistive technology (they repeat it).
 * @param {Waterfall} w
 * @param {Document} [doc]
 * @returns {HTMLElement}
 */
export function renderWaterfall(w, doc = document) {
  const figure = doc.createElement("figure");
  figure.className = "waterfall";
  figure.dataset.origin = w.origin;
  figure.setAttribute("role", "img");
  figure.setAttribute("aria-label", describeWaterfall(w));
  const caption = doc.createElement("figcaption");
  caption.setAttribute("aria-hidden", "true");
  caption.textContent = `From ${ORIGIN_LABEL[w.origin]}`;
  const list = doc.createElement("ol");
  list.setAttribute("aria-hidden", "true");
  let prev = 0;
  for (const mark of w.marks) {
    const start = Math.min(prev, mark.ms);
    const li = doc.createElement("li");
    li.className = `wf-${mark.stage}`; // prefixed: the widget already styles a bubble's ".text"
    li.dataset.key = mark.key;
    li.dataset.ms = String(Math.round(mark.ms));
    const label = doc.createElement("span");
    label.className = "label";
    label.textContent = mark.label;
    const track = doc.createElement("span");
    track.className = "track";
    const bar = doc.createElement("span");
    bar.className = "bar";
    const pct = (v) => (w.total > 0 ? (100 * v) / w.total : 0);
    bar.style.left = `${pct(start)}%`;
    bar.style.width = `${pct(mark.ms - start)}%`;
    track.append(bar);
    const ms = doc.createElement("span");
    ms.className = "ms";
    ms.textContent = `${Math.round(mark.ms)} ms`;
    li.append(label, track, ms);
    list.append(li);
    prev = Math.max(prev, mark.ms);
  }
  figure.append(caption, list);
  return figure;
}
