/** Shared test signal helpers. Not a test file (no `.test.js` suffix). */

/** A sine of `freq` Hz at `rate`, `n` samples, amplitude `amp`. */
export function sine(freq, rate, n, amp = 0.5, phase = 0) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = amp * Math.sin((2 * Math.PI * freq * i) / rate + phase);
  return out;
}

/** Feed `input` to `fn` in blocks whose sizes cycle through `sizes`; concatenate what comes back. */
export function inBlocks(input, sizes, fn) {
  const parts = [];
  let at = 0;
  let k = 0;
  while (at < input.length) {
    const n = Math.min(sizes[k++ % sizes.length], input.length - at);
    parts.push(Float32Array.from(fn(input.subarray(at, at + n))));
    at += n;
  }
  return concat(parts);
}

export function concat(parts) {
  const total = parts.reduce((s, p) => s + p.length, 0);
  const out = new Float32Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** RMS of a slice. */
export function rmsOf(x, from = 0, to = x.length) {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i] * x[i];
  return Math.sqrt(s / Math.max(1, to - from));
}

/** Amplitude of the component at `freq` (single-bin DFT over a whole number of periods is not required). */
export function toneAmplitude(x, freq, rate, from = 0, to = x.length) {
  let re = 0;
  let im = 0;
  for (let i = from; i < to; i++) {
    const a = (2 * Math.PI * freq * i) / rate;
    re += x[i] * Math.cos(a);
    im += x[i] * Math.sin(a);
  }
  return (2 * Math.hypot(re, im)) / (to - from);
}

export const db = (ratio) => 20 * Math.log10(ratio);
