import test from "node:test";
import assert from "node:assert/strict";
import { Backoff } from "../lib/backoff.js";

test("delays grow exponentially up to the cap", () => {
  const b = new Backoff({ initialMs: 500, maxMs: 15000, factor: 2, jitter: 0.3, random: () => 0 });
  const delays = Array.from({ length: 8 }, () => b.next());
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
});

test("jitter only shortens delays, by at most the jitter fraction, so the cap holds", () => {
  for (const r of [0, 0.25, 0.5, 0.999]) {
    const b = new Backoff({ initialMs: 500, maxMs: 15000, jitter: 0.3, random: () => r });
    for (let i = 0; i < 12; i++) {
      const base = b.baseDelay();
      const d = b.next();
      assert.ok(d <= base && d <= 15000, `${d} <= ${base}`);
      assert.ok(d >= Math.floor(base * 0.7), `${d} >= 70% of ${base}`);
    }
  }
});

test("jittered delays differ between clients", () => {
  const a = new Backoff({ random: () => 0.1 });
  const b = new Backoff({ random: () => 0.9 });
  a.next();
  b.next();
  assert.notEqual(a.next(), b.next());
});

test("reset starts over", () => {
  const b = new Backoff({ initialMs: 100, random: () => 0 });
  b.next();
  b.next();
  b.reset();
  assert.equal(b.next(), 100);
});
