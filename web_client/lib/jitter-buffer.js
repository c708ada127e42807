/**
 * The agent-audio queue between the network and the speaker, at the *server's* sample rate.
 *
 * - Pre-roll: after being empty it holds back until `prerollSamples` are queued (absorbing network
 *   jitter so playback doesn't stutter), or until it has waited that long anyway (so a reply shorter than
 *   the pre-roll still plays). The wait clock is driven by {@link JitterBuffer#tick}, i.e. by the audio
 *   thread's render clock, not wall time.
 * - Gapless: reads copy across chunk borders; a read only comes up short when the queue runs dry.
 * - Positions, in samples of one stream (everything pushed since {@link JitterBuffer#reset}):
 *   `received` counts every sample pushed, `head` is the index of the next sample to be read, and
 *   `played` is the position just past the last sample read out. {@link JitterBuffer#flush} discards the
 *   queue by moving `head` to `received` but leaves `played` alone — nothing more was heard — and the
 *   discarded samples count as passed as soon as a later sample is read (its position is past them).
 *   That is exactly the `played_samples` the `playback_ack` message reports.
 *
 * @module jitter-buffer
 */

/**
 * @typedef {object} JitterBufferOptions
 * @property {number} prerollSamples queued samples needed before (re)starting
 * @property {number} [maxWaitSamples=prerollSamples] start anyway after waiting this long with data queued
 */

export class JitterBuffer {
  /** @param {JitterBufferOptions} options */
  constructor({ prerollSamples, maxWaitSamples = prerollSamples }) {
    this.prerollSamples = Math.max(0, prerollSamples | 0);
    this.maxWaitSamples = Math.max(0, maxWaitSamples);
    this.reset();
  }

  /** Start a new stream: empty queue, all positions back to 0. */
  reset() {
    /** @type {Float32Array[]} */
    this._chunks = [];
    this._offset = 0; // read position inside _chunks[0]
    this._buffered = 0;
    this._received = 0;
    this._head = 0;
    this._played = 0;
    this._started = false;
    this._waited = 0;
    /** Times the queue ran dry while playing: the end of a reply, or a network stall. */
    this.drains = 0;
  }

  /** Samples pushed since reset (the stream length so far). */
  get received() {
    return this._received;
  }
  /** Stream index of the next sample to be read. */
  get head() {
    return this._head;
  }
  /** Position just past the last sample read out. */
  get played() {
    return this._played;
  }
  /** Samples queued. */
  get buffered() {
    return this._buffered;
  }
  /** Whether reads currently return audio (false while pre-rolling or empty). */
  get started() {
    return this._started;
  }

  /**
   * Queue samples. The buffer keeps a reference: don't reuse the array.
   * @param {Float32Array} samples
   */
  push(samples) {
    if (!samples.length) return;
    this._chunks.push(samples);
    this._buffered += samples.length;
    this._received += samples.length;
  }

  /**
   * Advance the pre-roll wait clock by the duration of one render quantum.
   * @param {number} samples duration, in samples at this buffer's rate
   */
  tick(samples) {
    if (this._started || this._buffered === 0) return;
    this._waited += samples;
    if (this._waited >= this.maxWaitSamples) this._started = true;
  }

  /**
   * Read up to `count` samples into `dst` starting at `offset`.
   * @param {Float32Array} dst
   * @param {number} [count]
   * @param {number} [offset=0]
   * @returns {number} samples read: 0 while pre-rolling; fewer than asked only when the queue runs dry
   */
  read(dst, count = dst.length, offset = 0) {
    if (!this._started) {
      if (this._buffered === 0 || this._buffered < this.prerollSamples) return 0;
      this._started = true;
    }
    let n = 0;
    while (n < count && this._chunks.length) {
      const chunk = this._chunks[0];
      const take = Math.min(count - n, chunk.length - this._offset);
      dst.set(chunk.subarray(this._offset, this._offset + take), offset + n);
      n += take;
      this._offset += take;
      if (this._offset === chunk.length) {
        this._chunks.shift();
        this._offset = 0;
      }
    }
    this._buffered -= n;
    this._head += n;
    if (n > 0) this._played = this._head;
    if (this._buffered === 0) {
      // Ran dry: pre-roll again before resuming, so one late packet doesn't turn into a stutter per packet.
      this._started = false;
      this._waited = 0;
      this.drains += 1;
    }
    return n;
  }

  /**
   * Account for `count` samples that arrived but are dropped unplayed (stale audio still in flight after a
   * barge-in). Like a push followed by {@link JitterBuffer#flush}: anything still queued is dropped too,
   * and the positions move past them so later samples keep the server's numbering.
   * @param {number} count
   */
  skip(count) {
    this.flush();
    this._received += count;
    this._head = this._received;
  }

  /**
   * Discard everything queued (barge-in). `played` is unchanged: those samples were never heard.
   * @returns {number} the `played` position
   */
  flush() {
    this._chunks = [];
    this._offset = 0;
    this._buffered = 0;
    this._head = this._received;
    this._started = false;
    this._waited = 0;
    return this._played;
  }
}
