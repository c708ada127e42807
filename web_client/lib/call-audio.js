/**
 * The audio side of one call, between the Web Audio layer ({@link AudioEngine}) and the wire:
 *
 * - microphone frames → (unless muted) binary frames, speech-start/end hints, local barge-in detection;
 * - agent audio from the wire → the playback worklet, or, right after a local barge-in, counted as
 *   discarded: the server keeps streaming until our `interrupt` reaches it, and that audio is stale;
 * - the playback worklet's position reports → `playback_ack` messages;
 * - the server's `playback_pause` / `playback_resume` → hold / continue playback (queue kept).
 *
 * VoiceClient owns the connection and the conversation state; it creates one CallAudio per call.
 *
 * @module call-audio
 */

import { AudioEngine } from "./audio-engine.js";
import { SpeechDetector } from "./speech-detector.js";

/** Counters kept in `stats` (totals, when the owner passes the same object to every call). */
const COUNTERS = [
  "framesSent",
  "bytesSent",
  "acksSent",
  "flushes",
  "bargeIns",
  "samplesDiscarded",
  "pauses",
  "pauseTimeouts",
];

/**
 * Messages showing the server has handled our interrupt (or started something new), after which agent
 * audio is current again. `status: speaking` is not one: it may have been sent before the interrupt.
 * @param {{type: string, status?: string}} msg
 */
export function serverMovedOn(msg) {
  return (
    msg.type === "playback_interrupt" ||
    msg.type === "audio_config" ||
    msg.type === "transcript_start" ||
    (msg.type === "status" && msg.status !== "speaking")
  );
}

/**
 * @typedef {object} CallAudioHooks
 * @property {(message: object) => boolean} sendJSON returns false when not connected
 * @property {(pcm: ArrayBuffer) => boolean} sendBinary returns false when not connected
 * @property {() => boolean} canStream whether mic audio may be sent now (call acknowledged locally)
 * @property {(level: number) => void} onLevel
 * @property {(playing: boolean) => void} onPlaying
 * @property {(paused: boolean, reason: string) => void} onPaused playback paused, or not any more ("resume",
 *   "timeout", "flush", "config")
 * @property {(played: number, reason: string) => void} onAckSent
 * @property {() => void} onBargeIn the user talked over the agent (before the flush)
 * @property {(message: string) => void} onError
 */

export class CallAudio {
  /**
   * @param {object} options
   * @param {object} options.engine options for the AudioEngine (rates, frame size, devices)
   * @param {((opts: object) => AudioEngine) | undefined} options.createEngine replacement (tests)
   * @param {import("./speech-detector.js").SpeechDetectorOptions} options.detector
   * @param {number} options.frameMs real frame duration
   * @param {boolean} options.bargeIn
   * @param {boolean} options.playback
   * @param {number} options.sampleRate initial agent-audio rate
   * @param {object} [options.stats] counters object to update (lets the owner keep totals across calls)
   * @param {CallAudioHooks} hooks
   */
  constructor(options, hooks) {
    this.options = options;
    this.hooks = hooks;
    this.muted = false;
    this.playing = false;
    this.paused = false;
    this.detector = new SpeechDetector(options.detector);
    this.stats = options.stats ?? {};
    for (const key of COUNTERS) this.stats[key] ??= 0;
    this.stats.lastAck ??= null;
    this._discard = false;
    this._bargingIn = false;
    this._lastAckSent = -1;
    const engineOptions = {
      ...options.engine,
      playback: options.playback,
      onFrame: (pcm, rms) => this._onFrame(pcm, rms),
      onPlayback: (event) => this._onPlayback(event),
      onError: (message) => hooks.onError(message),
    };
    /** @type {AudioEngine} */
    this.engine = options.createEngine ? options.createEngine(engineOptions) : new AudioEngine(engineOptions);
    this.engine.configurePlayback(options.sampleRate);
  }

  /** Open the microphone and audio graph. Call from a user gesture; rejects with the getUserMedia error. */
  async start() {
    this.engine.prepare(); // synchronously, while the click's user activation is still valid
    await this.engine.start({ capture: true });
  }

  /**
   * End the call's audio. With `flush`, agent audio still playing is stopped first and its final
   * `playback_ack` sent, so the server learns what was heard before the call ends.
   */
  async stop({ flush }) {
    if (this.detector.speaking) this.hooks.sendJSON({ type: "end_of_speech" });
    this.detector.reset();
    this._discard = false;
    this.engine.stopCapture();
    if (flush && this.engine.playing) await this.engine.flush();
    await this.engine.close();
  }

  /** A new agent-audio stream (audio_config, or a new connection): positions restart at 0. */
  newStream(sampleRate) {
    this._discard = false;
    this._lastAckSent = -1;
    this.playing = false;
    this.paused = false;
    this.detector.reset();
    this.engine.configurePlayback(sampleRate);
  }

  /** A server message arrived (ends the post-barge-in discard window when appropriate). */
  onServerMessage(msg) {
    if (this._discard && serverMovedOn(msg)) this._discard = false;
  }

  /**
   * Agent audio from the wire.
   * @param {ArrayBuffer} buffer int16 LE mono
   */
  onAudio(buffer) {
    if (!this.options.playback) return;
    if (this._discard) {
      const samples = buffer.byteLength >> 1;
      this.stats.samplesDiscarded += samples;
      this.engine.discard(samples);
    } else {
      this.engine.enqueue(buffer);
    }
  }

  /** Stop agent audio now (server `playback_interrupt`); the ack goes out as soon as the worklet reports. */
  async flush() {
    this.stats.flushes += 1;
    this.playing = false;
    await this.engine.flush();
  }

  /**
   * Hold agent audio (server `playback_pause`): it stops now, what is queued stays queued, and the heard position
   * stops, so acks stay truthful. Nothing to hold while stale audio is being discarded after a local barge-in.
   */
  pause() {
    if (!this.options.playback || this._discard) return;
    this.stats.pauses += 1;
    this.paused = true;
    this.engine.pause();
  }

  /** Continue agent audio from where {@link CallAudio#pause} held it (server `playback_resume`). */
  resume() {
    if (this.paused) this.engine.resume();
  }

  setMuted(muted) {
    this.muted = muted;
    if (muted) {
      // Close an open utterance, or the server may wait forever for the rest of it.
      if (this.detector.speaking) this.hooks.sendJSON({ type: "end_of_speech" });
      this.detector.reset();
    } else {
      this.engine.resetCapture();
    }
  }

  _onFrame(pcm, rms) {
    if (this.muted) return;
    this.hooks.onLevel(rms);
    const d = this.detector.update(rms, this.options.frameMs, this.playing);
    if (this.hooks.canStream() && this.hooks.sendBinary(pcm)) {
      this.stats.framesSent += 1;
      this.stats.bytesSent += pcm.byteLength;
    }
    if (d.speechStart) this.hooks.sendJSON({ type: "start_of_speech" });
    if (d.speechEnd) this.hooks.sendJSON({ type: "end_of_speech" });
    if (d.bargeIn && this.options.bargeIn) this._bargeIn();
  }

  /** The user talked over the agent: silence it here first (instant), report what was heard, interrupt. */
  async _bargeIn() {
    if (this._bargingIn) return;
    this._bargingIn = true;
    try {
      this.stats.bargeIns += 1;
      this._discard = true;
      this.hooks.onBargeIn();
      await this.flush(); // its playback_ack goes out before the interrupt
      this.hooks.sendJSON({ type: "interrupt" });
    } finally {
      this._bargingIn = false;
    }
  }

  _onPlayback(event) {
    if (event.type === "playing") {
      this.playing = !!event.playing;
      this.hooks.onPlaying(this.playing);
      return;
    }
    if (event.type === "paused") {
      this.paused = !!event.paused;
      if (!event.paused && event.reason === "timeout") this.stats.pauseTimeouts += 1;
      this.hooks.onPaused?.(this.paused, event.reason);
      return;
    }
    if (event.type !== "ack") return;
    // Periodic reports only when the position moved; flush and drain reports always go out.
    if (event.reason === "tick" && event.played === this._lastAckSent) return;
    if (this.hooks.sendJSON({ type: "playback_ack", played_samples: event.played })) {
      this._lastAckSent = event.played;
      this.stats.acksSent += 1;
      this.stats.lastAck = { played: event.played, reason: event.reason, at: Date.now() };
      this.hooks.onAckSent(event.played, event.reason);
    }
  }
}
