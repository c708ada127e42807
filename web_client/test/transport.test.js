import test from "node:test";
import assert from "node:assert/strict";
import { WebSocketTransport, createTransport } from "../lib/transport.js";

/** A scripted WebSocket stand-in plus a manual clock. */
function harness() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(data) {
      this.sent.push(data);
    }
    close() {
      this.readyState = 3;
    }
    // test controls
    open() {
      this.readyState = 1;
      this.onopen?.();
    }
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code, reason: "" });
    }
  }
  let now = 0;
  const timers = [];
  const clock = {
    setTimeout: (fn, ms) => timers.push({ fn, at: now + ms }) - 1,
    clearTimeout: (id) => (timers[id] = null),
    now: () => now,
  };
  const advance = (ms) => {
    now += ms;
    timers.forEach((t, i) => {
      if (t && t.at <= now) {
        timers[i] = null;
        t.fn();
      }
    });
  };
  return { sockets, FakeSocket, clock, advance, pending: () => timers.filter(Boolean) };
}

test("reconnects after a drop with growing, capped delays", () => {
  const h = harness();
  const t = new WebSocketTransport({
    url: "ws://h/agents/a/i",
    WebSocket: h.FakeSocket,
    timers: h.clock,
    reconnect: { initialMs: 100, maxMs: 400, jitter: 0, factor: 2 },
  });
  const closes = [];
  t.onclose = (info) => closes.push(info);
  t.connect();
  assert.equal(h.sockets.length, 1);
  assert.equal(h.sockets[0].binaryType, "arraybuffer");
  h.sockets[0].drop(); // never opened: server unreachable
  for (let i = 0; i < 4; i++) {
    const delay = closes.at(-1).delayMs;
    h.advance(delay);
    h.sockets.at(-1).drop();
  }
  assert.deepEqual(closes.map((c) => c.delayMs), [100, 200, 400, 400, 400]);
  assert.ok(closes.every((c) => c.willRetry && !c.wasOpen));
});

test("a connection that stayed up resets the backoff; a flapping one does not", () => {
  const h = harness();
  const t = new WebSocketTransport({ url: "ws://x", WebSocket: h.FakeSocket, timers: h.clock, reconnect: { initialMs: 100, jitter: 0 } });
  const closes = [];
  t.onclose = (info) => closes.push(info);
  t.connect();
  h.sockets[0].drop();
  h.advance(100);
  h.sockets[1].open();
  h.sockets[1].drop(); // flapped immediately
  assert.equal(closes.at(-1).delayMs, 200);
  h.advance(200);
  h.sockets[2].open();
  h.advance(6000); // stable
  h.sockets[2].drop();
  assert.equal(closes.at(-1).delayMs, 100);
  assert.equal(closes.at(-1).wasOpen, true);
});

test("disconnect stops reconnecting and sends nothing more", () => {
  const h = harness();
  const t = new WebSocketTransport({ url: "ws://x", WebSocket: h.FakeSocket, timers: h.clock });
  t.connect();
  h.sockets[0].open();
  assert.equal(t.sendJSON({ type: "hello" }), true);
  assert.equal(h.sockets[0].sent[0], '{"type":"hello"}');
  t.disconnect();
  assert.equal(t.connected, false);
  assert.equal(t.sendJSON({ type: "x" }), false);
  assert.equal(h.pending().length, 0);
});

test("transport seam: objects pass through, webrtc is VoiceClient's mode", () => {
  const custom = { connect() {} };
  assert.equal(createTransport(custom, {}), custom);
  assert.ok(createTransport("websocket", { url: "ws://x" }) instanceof WebSocketTransport);
  assert.throws(() => createTransport("webrtc", {}), /VoiceClient mode/);
  assert.throws(() => createTransport("carrier-pigeon", {}), /Unknown transport/);
});
