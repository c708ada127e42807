/**
 * Agent-audio playback engine, independent of the Web Audio API so it can be unit-tested: a
 * {@link JitterBuffer} at the server's rate feeding a {@link StreamingResampler} to the output rate, pulled
 * one render quantum at a time by the playback AudioWorklet.
 *
 * It also keeps the heard position for `playback_ack`. The resampler consumes input ahead of what has been
 * rendered (its look-ahead) and a few outputs wait in a small FIFO, so the jitter buffer's own read position
 * runs ahead of the speaker. Each resampled output therefore carries a tag — the stream position just past
 * the input sample at its instant — and the heard position is the tag of the last sample actually rendered.
 *
 * Pause ({@link Player#pause}, for the server's `playback_pause`) holds everything where it is: output stops (with
 * the same de-click ramp as a flush), the queued and resampled audio are kept, and the heard position stops. Resume
 * continues with the very next sample (faded in over the de-click length); a flush while paused drops it all as
 * usual. A pause nobody ends resumes by itself after `maxPauseMs`, counted in rendered audio time.
 *
 * Events (via `onEvent`):
 * - `{type: "ack", played, received, reason: "tick" | "flush" | "drain" | "pause"}` — every `ackIntervalMs`
 *   while playing, at once on {@link Player#flush} and {@link Player#pause}, and when playback runs dry;
 * - `{type: "playing", playing}` — agent audio started / stopped coming out;
 * - `{type: "paused", paused, reason}` — paused (`reason` "pause"), or not any more: "resume", "timeout"
 *   (`maxPauseMs` passed), "flush" or "config".
 *
 * @module player
 */

import { JitterBuffer } from "./jitter-buffer.js";
import { StreamingResampler } from "./resampler.js";
import { int16ToFloat } from "./pcm.js";

/**
 * @typedef {object} PlayerOptions
 * @property {number} outRate the AudioContext's sample rate
 * @property {number} [inRate=16000] the server's rate (changed later by {@link Player#configure})
 * @property {number} [prerollMs=80]
 * @property {number} [ackIntervalMs=200]
 * @property {number} [declickMs=4] after a flush or pause, ramp from the last output value to 0 over this long
 *   (and fade in over this long on resume)
 * @property {number} [maxPauseMs=3000] a pause resumes by itself after this long
 * @property {(event: object) => void} [onEvent]
 */

export class Player {
  /** @param {PlayerOptions} options */
  constructor({ outRate, inRate = 16000, prerollMs = 80, ackIntervalMs = 200, declickMs = 4, maxPauseMs = 3000, onEvent }) {
    this.outRate = outRate;
    this._maxPause = Math.max(1, Math.round((outRate * maxPauseMs) / 1000));
    this._paused = false;
    this._pausedFor = 0;
    this._fadeInLeft = 0;
    this.prerollMs = prerollMs;
    this.onEvent = onEvent || (() => {});
    this._ackInterval = Math.max(1, Math.round((outRate * ackIntervalMs) / 1000));
    this._declickLen = Math.max(1, Math.round((outRate * declickMs) / 1000));
    this._fifo = new Float32Array(4096);
    this._tags = new Float64Array(4096);
    this._scratch = new Float32Array(2048);
    this.inRate = 0;
    this.configure(inRate);
  }

  /**
   * Start a new stream at `inRate` (an `audio_config` arrived): drops queued audio, positions restart at 0.
   * @param {number} inRate
   */
  configure(inRate) {
    if (inRate !== this.inRate) {
      this.inRate = inRate;
      this._resampler = new StreamingResampler({ inRate, outRate: this.outRate });
      const preroll = Math.round((inRate * this.prerollMs) / 1000);
      this._jb = new JitterBuffer({ prerollSamples: preroll });
    }
    const wasPlaying = this.playing;
    this._jb.reset();
    this._resampler.reset();
    this._segBase = 0;
    this._clearFifo();
    this._heard = 0;
    this._sinceAck = 0;
    this._lastAcked = 0;
    this._lastSample = 0;
    this._declickLeft = 0;
    this._fadeInLeft = 0;
    this.playing = false;
    if (wasPlaying) this.onEvent({ type: "playing", playing: false });
    this._unpause("config");
  }

  /** Stream position just past the last sample rendered (what `playback_ack` reports). */
  get played() {
    return this._heard;
  }
  /** Whether playback is paused (output held, queue kept). */
  get paused() {
    return this._paused;
  }
  /** Samples received in this stream. */
  get received() {
    return this._jb.received;
  }
  /** Queued audio in ms (jitter buffer plus resampler/FIFO), for diagnostics. */
  get bufferedMs() {
    const fifoIn = (this._fifoLen() * this.inRate) / this.outRate;
    return ((this._jb.buffered + this._resampler.pending + fifoIn) * 1000) / this.inRate;
  }

  /**
   * Queue agent audio (int16 from the wire, or float).
   * @param {Int16Array | Float32Array} samples
   */
  push(samples) {
    this._jb.push(samples instanceof Int16Array ? int16ToFloat(samples) : samples);
  }

  /**
   * Count `count` received samples as discarded without playing them (stale audio after a barge-in).
   * Also drops anything still queued; no ack (the flush that preceded it already reported).
   * @param {number} count
   */
  discard(count) {
    this._stop();
    this._jb.skip(count);
    this._segBase = this._jb.head;
  }

  /**
   * Stop now and drop everything queued. Emits an ack with the heard position.
   * @returns {number} the heard position
   */
  flush() {
    this._stop();
    this._jb.flush();
    this._segBase = this._jb.head;
    this._unpause("flush");
    this._ack("flush");
    return this._heard;
  }

  /**
   * Hold playback now: output ramps to silence within the de-click length, everything queued (including the
   * resampler's state) is kept, and the heard position stays where it is. Emits an ack with that position.
   * Audio pushed meanwhile is queued. No-op if already paused.
   * @returns {number} the heard position
   */
  pause() {
    if (this._paused) return this._heard;
    this._paused = true;
    this._pausedFor = 0;
    this._fadeInLeft = 0;
    this._declickFrom = this._lastSample;
    this._declickLeft = this._lastSample === 0 ? 0 : this._declickLen;
    this._lastSample = 0;
    const wasPlaying = this.playing;
    this.playing = false;
    if (wasPlaying) this.onEvent({ type: "playing", playing: false });
    this.onEvent({ type: "paused", paused: true, reason: "pause" });
    this._ack("pause");
    return this._heard;
  }

  /**
   * Continue after {@link Player#pause} with the next unplayed sample (faded in over the de-click length, so the
   * restart does not click). No-op unless paused.
   * @param {string} [reason="resume"]
   */
  resume(reason = "resume") {
    if (!this._paused) return;
    this._declickLeft = 0;
    this._fadeInLeft = this._declickLen;
    this._unpause(reason);
  }

  _unpause(reason) {
    if (!this._paused) return;
    this._paused = false;
    this._pausedFor = 0;
    this.onEvent({ type: "paused", paused: false, reason });
  }

  /** Silence output at once (with a de-click ramp) and forget resampler/FIFO state. */
  _stop() {
    const wasPlaying = this.playing;
    this._resampler.reset();
    this._clearFifo();
    // Ramp from wherever the waveform was to zero instead of stepping to silence (a step is a click).
    this._declickFrom = this._lastSample;
    this._declickLeft = this._lastSample === 0 ? 0 : this._declickLen;
    this._lastSample = 0;
    this._fadeInLeft = 0;
    this.playing = false;
    if (wasPlaying) this.onEvent({ type: "playing", playing: false });
  }

  /**
   * Fill one render quantum. Silence where there is nothing (yet) to play.
   * @param {Float32Array} out
   */
  render(out) {
    const n = out.length;
    if (this._paused) {
      this._pausedFor += n;
      if (this._pausedFor < this._maxPause) {
        this._silence(out, 0);
        return;
      }
      this.resume("timeout"); // nobody ended the pause: don't stay silent for good
    }
    this._jb.tick((n * this.inRate) / this.outRate);
    let filled = 0;
    while (filled < n) {
      if (this._fifoLen() > 0) {
        filled += this._takeFifo(out, filled, n - filled);
        continue;
      }
      const rs = this._resampler;
      // Ask for about as much input as the rest of this quantum needs; the resampler's look-ahead means
      // the very first reads of a segment yield fewer outputs, and the loop simply reads again.
      const want = Math.min(this._scratch.length, Math.ceil(((n - filled) * this.inRate) / this.outRate) + 1);
      const got = this._jb.read(this._scratch, want);
      if (got > 0) {
        const k0 = rs.outputCount;
        this._feed(rs.process(this._scratch.subarray(0, got)), k0, rs.inputCount);
        continue;
      }
      if (this._jb.buffered === 0 && rs.pending > 0) {
        // Ran dry: release the resampler's look-ahead tail, and start a fresh segment for later audio.
        const k0 = rs.outputCount;
        const inCount = rs.inputCount;
        this._feed(rs.flush(), k0, inCount);
        this._segBase = this._jb.head;
        continue;
      }
      break;
    }
    if (filled > 0) {
      this._fadeIn(out, filled);
      this._lastSample = out[filled - 1];
      if (!this.playing) {
        this.playing = true;
        this._sinceAck = 0;
        this.onEvent({ type: "playing", playing: true });
      }
    }
    this._silence(out, filled);
    if (filled < n && this.playing && this._fifoLen() === 0 && this._jb.buffered === 0 && this._resampler.pending === 0) {
      // Everything received has now been rendered. (Tags can stop a sample or two short when downsampling:
      // the last inputs may have no output instant of their own, though they are in the filtered signal.)
      this._heard = Math.max(this._heard, this._jb.head);
      this.playing = false;
      this._lastSample = 0;
      this.onEvent({ type: "playing", playing: false });
      this._ack("drain");
      return;
    }
    if (this.playing) {
      this._sinceAck += n;
      if (this._sinceAck >= this._ackInterval) {
        this._sinceAck = 0;
        if (this._heard !== this._lastAcked) this._ack("tick");
      }
    }
  }

  /** Fill `out` from `from` on with the rest of the de-click ramp, then zeros. */
  _silence(out, from) {
    for (let i = from; i < out.length; i++) {
      out[i] = this._declickLeft > 0 ? (this._declickFrom * --this._declickLeft) / this._declickLen : 0;
    }
  }

  /** Scale the first samples after a resume by a rising ramp. */
  _fadeIn(out, filled) {
    const len = this._declickLen;
    for (let i = 0; i < filled && this._fadeInLeft > 0; i++) out[i] *= (len - --this._fadeInLeft) / len;
  }

  _ack(reason) {
    this._lastAcked = this._heard;
    this.onEvent({ type: "ack", played: this._heard, received: this._jb.received, reason });
  }

  // --- FIFO of resampled, position-tagged samples -------------------------------------------------------

  _clearFifo() {
    this._fr = 0;
    this._fw = 0;
  }

  _fifoLen() {
    return this._fw - this._fr;
  }

  /** Append resampler outputs `k0, k0+1, ...` of the current segment with their stream positions. */
  _feed(samples, k0, inputCount) {
    const m = samples.length;
    if (!m) return;
    if (this._fw + m > this._fifo.length) {
      const live = this._fifoLen();
      const size = Math.max(this._fifo.length, 2 * (live + m));
      const fifo = new Float32Array(size);
      const tags = new Float64Array(size);
      fifo.set(this._fifo.subarray(this._fr, this._fw));
      tags.set(this._tags.subarray(this._fr, this._fw));
      this._fifo = fifo;
      this._tags = tags;
      this._fr = 0;
      this._fw = live;
    }
    this._fifo.set(samples, this._fw);
    const rs = this._resampler;
    const limit = this._segBase + inputCount;
    for (let j = 0; j < m; j++) {
      // Just past the input sample at this output's instant; never beyond what the segment received.
      this._tags[this._fw + j] = Math.min(limit, this._segBase + rs.inputIndexOf(k0 + j) + 1);
    }
    this._fw += m;
  }

  _takeFifo(out, at, max) {
    const take = Math.min(max, this._fifoLen());
    out.set(this._fifo.subarray(this._fr, this._fr + take), at);
    this._fr += take;
    this._heard = this._tags[this._fr - 1];
    if (this._fr === this._fw) this._clearFifo();
    return take;
  }
}
