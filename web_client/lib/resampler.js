/**
 * Streaming sample-rate converter: windowed-sinc (Kaiser) polyphase FIR with its state carried across
 * calls, so a stream cut into 128-sample render quanta comes out bit-identical to the same stream
 * converted in one go — no per-block phase reset (clicks) and a real low-pass before decimation
 * (no aliasing, unlike linear interpolation).
 *
 * Timing model: output `k` is the band-limited value at input time `k * inRate / outRate`, centred (zero
 * phase). Producing it needs `reach` input samples of look-ahead, so outputs lag their inputs by `reach`
 * samples in *availability* only; {@link StreamingResampler#flush} pads with silence to release that tail.
 * Callers that map outputs back to input positions (playback acks) rely on this exact mapping.
 *
 * Used inside both AudioWorklets (mic → 16 kHz, server rate → speaker rate), so the hot path allocates
 * nothing once its buffers have grown.
 *
 * @module resampler
 */

/** Phase-table rows are capped; rate pairs with a huge reduced denominator use the nearest phase. */
const MAX_PHASES = 1024;

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Modified Bessel function of the first kind, order 0 (for the Kaiser window). */
function besselI0(x) {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 64; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

/**
 * @typedef {object} ResamplerOptions
 * @property {number} inRate integer Hz
 * @property {number} outRate integer Hz
 * @property {number} [zeroCrossings=24] kernel half-width, in zero crossings of the lower rate's sinc;
 *   more = sharper transition band, more CPU and look-ahead
 * @property {number} [rolloff=0.9] cut-off as a fraction of the lower Nyquist frequency
 * @property {number} [beta=8] Kaiser window shape (≈80 dB stop-band)
 */

export class StreamingResampler {
  /** @param {ResamplerOptions} options */
  constructor({ inRate, outRate, zeroCrossings = 24, rolloff = 0.9, beta = 8 }) {
    if (!Number.isInteger(inRate) || !Number.isInteger(outRate) || inRate <= 0 || outRate <= 0) {
      throw new RangeError(`sample rates must be positive integers (got ${inRate} → ${outRate})`);
    }
    this.inRate = inRate;
    this.outRate = outRate;
    const g = gcd(inRate, outRate);
    /** Input samples advanced per output sample = step / den (reduced fraction). */
    this.step = inRate / g;
    this.den = outRate / g;
    this.passthrough = inRate === outRate;

    // Downsampling stretches the kernel so its cut-off sits below the *output* Nyquist.
    const scale = Math.max(1, inRate / outRate);
    const halfWidth = zeroCrossings * scale;
    /** Look-ahead/history, in input samples, on each side of an output's centre. */
    this.reach = Math.ceil(halfWidth);
    this.taps = 2 * this.reach;
    const fc = (0.5 * rolloff) / scale; // cycles per input sample
    this.phases = Math.min(this.den, MAX_PHASES);
    this._exactPhases = this.den <= MAX_PHASES;

    // Row p holds the taps for fractional position p / phases. One extra row (fraction 1.0) lets the
    // rounding in the quantised-phase case land on it without special-casing.
    const taps = this.taps;
    const table = new Float32Array((this.phases + 1) * taps);
    const i0beta = besselI0(beta);
    for (let p = 0; p <= this.phases; p++) {
      const frac = p / this.phases;
      let sum = 0;
      const row = p * taps;
      for (let m = 0; m < taps; m++) {
        const x = frac + this.reach - 1 - m; // distance from the output instant to input tap m
        let h = 0;
        if (Math.abs(x) < halfWidth) {
          const r = x / halfWidth;
          const arg = 2 * fc * x;
          const sinc = arg === 0 ? 1 : Math.sin(Math.PI * arg) / (Math.PI * arg);
          h = 2 * fc * sinc * (besselI0(beta * Math.sqrt(1 - r * r)) / i0beta);
        }
        table[row + m] = h;
        sum += h;
      }
      // Unity DC gain for every phase; otherwise tiny per-phase gain differences become a buzz at the
      // phase-cycle rate.
      for (let m = 0; m < taps; m++) table[row + m] /= sum;
    }
    this._table = table;
    this._out = new Float32Array(0);
    this.reset();
  }

  /** Forget all history: the next input is treated as the start of a new stream. */
  reset() {
    // Index `reach - 1` in the buffer is input sample 0; the zeros before it are the silent "past".
    if (!this._buf) this._buf = new Float32Array(Math.max(4096, 4 * this.taps));
    this._buf.fill(0, 0, this.reach - 1);
    this._len = this.reach - 1;
    this._ri = this.reach - 1; // buffer index of the next output's integer input position
    this._p = 0; // next output's fractional position, in 1/den units
    /** Real input samples accepted since reset. */
    this.inputCount = 0;
    /** Output samples produced since reset. */
    this.outputCount = 0;
  }

  /** Input samples accepted but whose outputs have not all been produced yet (waiting for look-ahead). */
  get pending() {
    return this.passthrough ? 0 : Math.max(0, this._len - this._ri);
  }

  /**
   * Input sample index (since reset) at or just before output `k`'s instant.
   * @param {number} k
   */
  inputIndexOf(k) {
    return Math.floor((k * this.step) / this.den);
  }

  /**
   * Convert the next block of the stream.
   * @param {Float32Array} input
   * @returns {Float32Array} outputs now available; a view into an internal buffer (or `input` itself when
   *   the rates are equal) that is only valid until the next call — copy or consume it right away
   */
  process(input) {
    this.inputCount += input.length;
    if (this.passthrough) {
      this.outputCount += input.length;
      return input;
    }
    if (this._len + input.length > this._buf.length) {
      const grown = new Float32Array(Math.max(this._buf.length * 2, this._len + input.length));
      grown.set(this._buf.subarray(0, this._len));
      this._buf = grown;
    }
    this._buf.set(input, this._len);
    this._len += input.length;
    return this._run();
  }

  /**
   * Release the look-ahead tail (as if the stream continued with silence), then reset. Produces exactly
   * the outputs whose instants fall before the end of the input, so a whole stream of N samples yields
   * `ceil(N * outRate / inRate)` outputs in total.
   * @returns {Float32Array} same lifetime rules as {@link StreamingResampler#process}
   */
  flush() {
    if (this.passthrough || this.pending === 0) {
      this.reset();
      return new Float32Array(0);
    }
    const pad = this.reach;
    if (this._len + pad > this._buf.length) {
      const grown = new Float32Array(this._len + pad);
      grown.set(this._buf.subarray(0, this._len));
      this._buf = grown;
    }
    this._buf.fill(0, this._len, this._len + pad);
    this._len += pad;
    // With `reach` zeros appended, `_run`'s loop condition `ri + reach < len` becomes `ri < realLen`: it
    // stops right after the last output whose instant lies inside the real input.
    const out = this._run();
    this.reset();
    return out;
  }

  /** Produce every output whose taps are all available, then drop history no longer needed. */
  _run() {
    const { step, den, reach, taps, _table: table, _buf: buf } = this;
    const maxOut = Math.ceil(((this._len - this._ri) * den) / step) + 2;
    if (this._out.length < maxOut) this._out = new Float32Array(Math.max(maxOut, 2 * this._out.length));
    const out = this._out;
    let ri = this._ri;
    let p = this._p;
    let o = 0;
    const len = this._len;
    while (ri + reach < len) {
      const row = (this._exactPhases ? p : Math.round((p * this.phases) / den)) * taps;
      const start = ri - reach + 1;
      let acc = 0;
      for (let m = 0; m < taps; m++) acc += buf[start + m] * table[row + m];
      out[o++] = acc;
      p += step;
      if (p >= den) {
        ri += Math.floor(p / den);
        p %= den;
      }
    }
    this._ri = ri;
    this._p = p;
    this.outputCount += o;
    const drop = Math.min(ri - reach + 1, this._len);
    if (drop > 0) {
      buf.copyWithin(0, drop, this._len);
      this._len -= drop;
      this._ri -= drop;
    }
    return out.subarray(0, o);
  }
}
