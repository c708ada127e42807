/**
 * Frame-level speech heuristics on the mic signal (after the browser's echo cancellation):
 *
 * - speech start/end *hints* for the server (`start_of_speech` / `end_of_speech`), same thresholds as
 *   Cloudflare's client so servers tuned for it behave the same;
 * - local barge-in: the user talking over agent audio that is playing right now. It asks for `interruptMs`
 *   of loud frames within a window twice that long: clicks and bursts of residual echo are shorter, while
 *   real speech dips between syllables (~4–5 per second), so demanding *consecutive* loud frames would
 *   miss ordinary talking.
 *
 * Time is counted in frame durations, not timers, so behaviour is deterministic and testable.
 *
 * @module speech-detector
 */

/**
 * @typedef {object} SpeechDetectorOptions
 * @property {number} [silenceThreshold=0.04] RMS above this is speech (for the hints)
 * @property {number} [silenceMs=500] silence needed to end an utterance
 * @property {number} [interruptThreshold=0.05] RMS needed to count towards a barge-in
 * @property {number} [interruptMs=160] loud audio (within a window of twice this), while the agent plays,
 *   that triggers a barge-in
 */

/**
 * @typedef {object} SpeechDecision
 * @property {boolean} speechStart send `start_of_speech`
 * @property {boolean} speechEnd send `end_of_speech`
 * @property {boolean} bargeIn interrupt the agent now
 */

export class SpeechDetector {
  /** @param {SpeechDetectorOptions} [options] */
  constructor({ silenceThreshold = 0.04, silenceMs = 500, interruptThreshold = 0.05, interruptMs = 160 } = {}) {
    this.silenceThreshold = silenceThreshold;
    this.silenceMs = silenceMs;
    this.interruptThreshold = interruptThreshold;
    this.interruptMs = interruptMs;
    this.reset();
  }

  reset() {
    /** Whether an utterance is in progress (a start hint was sent and no end hint yet). */
    this.speaking = false;
    this._silentMs = 0;
    /** @type {Array<{ms: number, loud: boolean}>} recent frames while the agent plays, oldest first */
    this._recent = [];
    this._recentMs = 0;
    this._loudMs = 0;
  }

  /**
   * Feed one frame's level.
   * @param {number} level RMS, 0..1
   * @param {number} frameMs the frame's duration
   * @param {boolean} agentPlaying whether agent audio is coming out of the speaker right now
   * @returns {SpeechDecision}
   */
  update(level, frameMs, agentPlaying) {
    let speechStart = false;
    let speechEnd = false;
    let bargeIn = false;
    if (level > this.silenceThreshold) {
      this._silentMs = 0;
      if (!this.speaking) {
        this.speaking = true;
        speechStart = true;
      }
    } else if (this.speaking) {
      this._silentMs += frameMs;
      if (this._silentMs >= this.silenceMs) {
        this.speaking = false;
        this._silentMs = 0;
        speechEnd = true;
      }
    }
    if (agentPlaying) {
      const loud = level > this.interruptThreshold;
      this._recent.push({ ms: frameMs, loud });
      this._recentMs += frameMs;
      if (loud) this._loudMs += frameMs;
      while (this._recentMs - this._recent[0].ms >= 2 * this.interruptMs) {
        const old = this._recent.shift();
        this._recentMs -= old.ms;
        if (old.loud) this._loudMs -= old.ms;
      }
      if (loud && this._loudMs >= this.interruptMs) {
        bargeIn = true;
        this._recent = [];
        this._recentMs = 0;
        this._loudMs = 0;
      }
    } else if (this._recent.length) {
      this._recent = [];
      this._recentMs = 0;
      this._loudMs = 0;
    }
    return { speechStart, speechEnd, bargeIn };
  }
}
