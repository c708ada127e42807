/**
 * Microphone path inside the capture AudioWorklet: render quanta at the AudioContext rate → 16 kHz
 * (band-limited) → int16 frames of a fixed duration, each with its level for VAD and the level meter.
 *
 * @module capture
 */

import { StreamingResampler } from "./resampler.js";
import { FramePacker, frameSamplesFor } from "./pcm.js";

/**
 * @typedef {object} CaptureOptions
 * @property {number} inRate the AudioContext's sample rate
 * @property {number} [outRate=16000] rate sent to the server
 * @property {number} [frameMs=40] frame duration (clamped to 20–100 ms)
 */

export class CapturePipeline {
  /** @param {CaptureOptions} options */
  constructor({ inRate, outRate = 16000, frameMs = 40 }) {
    this.resampler = new StreamingResampler({ inRate, outRate });
    this.packer = new FramePacker(frameSamplesFor(outRate, frameMs));
    this.frameMs = (this.packer.frameSamples * 1000) / outRate;
  }

  /**
   * @param {Float32Array} block mono samples at `inRate`
   * @returns {import("./pcm.js").PcmFrame[]} completed frames
   */
  process(block) {
    return this.packer.push(this.resampler.process(block));
  }

  /** Drop partial state, e.g. after unmuting, so stale audio isn't sent ahead of fresh audio. */
  reset() {
    this.resampler.reset();
    this.packer.reset();
  }
}
