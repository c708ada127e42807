/**
 * Reconnect delays: exponential growth, capped, with jitter.
 *
 * Jitter only ever *shortens* a delay ("full-ish jitter" within the top `jitter` fraction), so the cap is
 * a hard upper bound and many clients dropped by one server restart don't reconnect in lock-step.
 *
 * @module backoff
 */

/**
 * @typedef {object} BackoffOptions
 * @property {number} [initialMs=500] delay before the first retry
 * @property {number} [maxMs=15000] no delay is ever longer than this
 * @property {number} [factor=2] growth per attempt
 * @property {number} [jitter=0.3] fraction (0..1) of each delay that is randomised away
 * @property {() => number} [random=Math.random] injectable for tests
 */

export class Backoff {
  /** @param {BackoffOptions} [options] */
  constructor({ initialMs = 500, maxMs = 15000, factor = 2, jitter = 0.3, random = Math.random } = {}) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.factor = factor;
    this.jitter = Math.min(1, Math.max(0, jitter));
    this.random = random;
    /** Retries handed out since the last {@link Backoff#reset}. */
    this.attempt = 0;
  }

  /** The un-jittered delay for attempt `n` (0-based), capped. */
  baseDelay(n = this.attempt) {
    return Math.min(this.maxMs, this.initialMs * Math.pow(this.factor, n));
  }

  /**
   * The delay before the next retry, in ms; advances the attempt counter.
   * @returns {number}
   */
  next() {
    const base = this.baseDelay(this.attempt);
    this.attempt += 1;
    return Math.round(base * (1 - this.jitter * this.random()));
  }

  /** Start over (call once a connection has proved stable). */
  reset() {
    this.attempt = 0;
  }
}
