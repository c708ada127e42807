/**
 * Fakes for the VoiceClient tests: a transport the test plays the server on, and a stand-in for the AudioEngine.
 * Not a test file (no `.test.js` suffix).
 */
import { VoiceClient } from "../voice-client.js";
import { Player } from "../lib/player.js";

/** A transport under test control: records what the client sends, lets the test play the server. */
export class FakeTransport {
  constructor() {
    this.sent = [];
    this.binary = [];
    this.connected = false;
    this.connects = 0;
  }
  connect() {
    this.connects += 1;
  }
  disconnect() {
    this.connected = false;
  }
  sendJSON(m) {
    if (!this.connected) return false;
    this.sent.push(m);
    return true;
  }
  sendBinary(b) {
    if (!this.connected) return false;
    this.binary.push(b);
    return true;
  }
  // server side
  open() {
    this.connected = true;
    this.onopen();
  }
  drop() {
    this.connected = false;
    this.onclose({ willRetry: true, wasOpen: true });
  }
  server(msg) {
    this.onmessage(JSON.stringify(msg));
  }
  audio(samples) {
    this.onmessage(new Int16Array(samples).buffer);
  }
  types() {
    return this.sent.map((m) => m.type);
  }
}

/** Stands in for AudioEngine: no Web Audio, but the same contract. */
export class FakeEngine {
  constructor(opts) {
    this.opts = opts;
    this.log = [];
    this.playing = false;
    this.played = 0;
    this.startError = null;
  }
  prepare() {
    this.log.push("prepare");
  }
  async start() {
    this.log.push("start");
    if (FakeEngine.failWith) throw FakeEngine.failWith;
  }
  configurePlayback(rate) {
    this.log.push(`config:${rate}`);
    this.played = 0;
  }
  enqueue(buf) {
    this.log.push(`audio:${buf.byteLength / 2}`);
  }
  discard(n) {
    this.log.push(`discard:${n}`);
  }
  async flush() {
    this.log.push("flush");
    this.playing = false;
    this.opts.onPlayback({ type: "playing", playing: false });
    this.opts.onPlayback({ type: "ack", played: this.played, reason: "flush" });
    return this.played;
  }
  pause() {
    this.log.push("pause");
    this.playing = false;
    this.opts.onPlayback({ type: "playing", playing: false });
    this.opts.onPlayback({ type: "paused", paused: true, reason: "pause" });
    this.opts.onPlayback({ type: "ack", played: this.played, reason: "pause" });
  }
  resume() {
    this.log.push("resume");
    this.opts.onPlayback({ type: "paused", paused: false, reason: "resume" });
  }
  stopCapture() {
    this.log.push("stopCapture");
  }
  resetCapture() {}
  async close() {
    this.log.push("close");
  }
  // test controls: the audio thread reporting
  play(played) {
    this.playing = true;
    this.played = played;
    this.opts.onPlayback({ type: "playing", playing: true });
    this.opts.onPlayback({ type: "ack", played, reason: "tick" });
  }
  frame(rms, n = 640) {
    this.opts.onFrame(new Int16Array(n).buffer, rms);
  }
}

/**
 * The AudioEngine contract with the real playback logic: a {@link Player} at 48 kHz, run synchronously (what the
 * playback worklet does on the audio thread). `render(ms)` advances the audio clock.
 */
export class PlayerEngine {
  constructor(opts) {
    this.opts = opts;
    this.playing = false;
    this.paused = false;
    this.played = 0;
    this.output = [];
    this.player = new Player({
      outRate: 48000,
      prerollMs: opts.prerollMs,
      maxPauseMs: opts.pauseTimeoutMs,
      onEvent: (event) => {
        if (event.type === "ack") this.played = event.played;
        if (event.type === "playing") this.playing = event.playing;
        if (event.type === "paused") this.paused = event.paused;
        opts.onPlayback(event);
      },
    });
  }
  prepare() {}
  async start() {}
  configurePlayback(rate) {
    this.player.configure(rate);
    this.played = 0;
  }
  enqueue(buf) {
    this.player.push(new Int16Array(buf));
  }
  discard(n) {
    this.player.discard(n);
  }
  async flush() {
    return this.player.flush();
  }
  pause() {
    this.player.pause();
  }
  resume() {
    this.player.resume();
  }
  stopCapture() {}
  resetCapture() {}
  async close() {}
  /** Render `ms` of output in 128-sample quanta; returns the samples. */
  render(ms) {
    const quanta = Math.round((48 * ms) / 128);
    const out = new Float32Array(quanta * 128);
    for (let q = 0; q < quanta; q++) this.player.render(out.subarray(q * 128, (q + 1) * 128));
    return out;
  }
}

export function setup(extra = {}) {
  FakeEngine.failWith = null;
  const transport = new FakeTransport();
  const engines = [];
  const history = { messages: [] };
  const fetches = [];
  const client = new VoiceClient({
    agent: "MyAgent",
    instance: "t1",
    host: "example.test",
    transport,
    createAudioEngine: (opts) => {
      const e = new FakeEngine(opts);
      engines.push(e);
      return e;
    },
    fetch: async (url) => {
      fetches.push(url);
      return { ok: true, json: async () => history };
    },
    ...extra,
  });
  const events = [];
  for (const type of ["connectionchange", "statuschange", "transcriptchange", "transcript", "interimtranscript", "error", "callchange", "metricschange", "bargein", "playbackack"]) {
    client.addEventListener(type, (e) => events.push({ type, detail: e.detail }));
  }
  return { client, transport, engines, history, fetches, events, engine: () => engines.at(-1) };
}

export const tick = () => new Promise((r) => setTimeout(r, 0));

