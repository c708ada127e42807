/**
 * PCM helpers shared by the worklets and the main thread: sample format conversion, levels, and packing a
 * stream of arbitrarily sized blocks into fixed-duration frames.
 *
 * Wire format is 16-bit signed little-endian mono. Every browser engine runs on little-endian hardware, so
 * typed arrays are used directly instead of a DataView per sample.
 *
 * @module pcm
 */

/**
 * Float [-1, 1] → int16, clamping out-of-range input (AGC can overshoot) instead of letting it wrap.
 * @param {Float32Array} input
 * @param {Int16Array} [out] destination, at least `input.length` long
 * @returns {Int16Array}
 */
export function floatToInt16(input, out = new Int16Array(input.length)) {
  for (let i = 0; i < input.length; i++) {
    const s = input[i];
    const v = s >= 1 ? 1 : s <= -1 ? -1 : s || 0; // `|| 0` maps NaN to silence
    out[i] = Math.round(v < 0 ? v * 32768 : v * 32767);
  }
  return out;
}

/**
 * int16 → float [-1, 1).
 * @param {Int16Array} input
 * @param {Float32Array} [out]
 * @returns {Float32Array}
 */
export function int16ToFloat(input, out = new Float32Array(input.length)) {
  for (let i = 0; i < input.length; i++) out[i] = input[i] / 32768;
  return out;
}

/**
 * View binary audio from the network as int16 samples. A trailing odd byte (never sent by a correct
 * server) is ignored rather than throwing.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {Int16Array}
 */
export function bytesToInt16(data) {
  const buffer = ArrayBuffer.isView(data) ? data.buffer : data;
  const offset = ArrayBuffer.isView(data) ? data.byteOffset : 0;
  const length = data.byteLength;
  if (offset % 2 === 0) return new Int16Array(buffer, offset, length >> 1);
  return new Int16Array(buffer.slice(offset, offset + (length & ~1)));
}

/**
 * Root-mean-square level of a block (0 for an empty block).
 * @param {ArrayLike<number>} samples
 * @returns {number}
 */
export function rms(samples) {
  if (!samples.length) return 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.sqrt(sum / samples.length);
}

/**
 * Average several channels into one (some devices deliver stereo even when mono was asked for).
 * @param {Float32Array[]} channels
 * @param {Float32Array} [out]
 * @returns {Float32Array}
 */
export function mixToMono(channels, out) {
  const n = channels[0].length;
  const dst = out && out.length >= n ? out.subarray(0, n) : new Float32Array(n);
  if (channels.length === 1) {
    dst.set(channels[0]);
    return dst;
  }
  dst.fill(0);
  for (const ch of channels) for (let i = 0; i < n; i++) dst[i] += ch[i];
  const k = 1 / channels.length;
  for (let i = 0; i < n; i++) dst[i] *= k;
  return dst;
}

/** Allowed frame durations: shorter frames cost per-message overhead, longer ones add latency. */
export const MIN_FRAME_MS = 20;
export const MAX_FRAME_MS = 100;

/**
 * Samples per frame for a rate and duration, with the duration clamped to the protocol's 20–100 ms.
 * @param {number} rate
 * @param {number} frameMs
 */
export function frameSamplesFor(rate, frameMs) {
  const ms = Math.min(MAX_FRAME_MS, Math.max(MIN_FRAME_MS, Number(frameMs) || 40));
  return Math.round((rate * ms) / 1000);
}

/**
 * @typedef {object} PcmFrame
 * @property {Int16Array} pcm exactly `frameSamples` samples; owns its buffer (safe to transfer)
 * @property {number} rms level of the frame, computed on the float samples (0..1)
 */

/**
 * Packs float blocks of any size (128-sample render quanta, resampler output of varying length) into
 * int16 frames of a fixed size. The remainder carries over to the next push, so no sample is dropped or
 * duplicated at block borders.
 */
export class FramePacker {
  /** @param {number} frameSamples */
  constructor(frameSamples) {
    if (!(frameSamples > 0)) throw new RangeError("frameSamples must be positive");
    this.frameSamples = frameSamples;
    this.reset();
  }

  /** Drop the partial frame. */
  reset() {
    this._frame = new Int16Array(this.frameSamples);
    this._fill = 0;
    this._sumSq = 0;
  }

  /** Samples waiting for the next frame to fill. */
  get pending() {
    return this._fill;
  }

  /**
   * @param {Float32Array} block
   * @returns {PcmFrame[]} the frames completed by this block (often none, sometimes several)
   */
  push(block) {
    /** @type {PcmFrame[]} */
    const frames = [];
    const size = this.frameSamples;
    for (let i = 0; i < block.length; i++) {
      const s = block[i];
      const v = s >= 1 ? 1 : s <= -1 ? -1 : s || 0;
      this._frame[this._fill++] = Math.round(v < 0 ? v * 32768 : v * 32767);
      this._sumSq += v * v;
      if (this._fill === size) {
        frames.push({ pcm: this._frame, rms: Math.sqrt(this._sumSq / size) });
        this._frame = new Int16Array(size); // a fresh buffer: the finished one is handed off (transferred)
        this._fill = 0;
        this._sumSq = 0;
      }
    }
    return frames;
  }
}
