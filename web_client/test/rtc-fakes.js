/** Stand-ins for WebRTC in node tests. Not a test file (no `.test.js` suffix). */

/** Plays the server side of a WebRTCTransport: `open()`, `fail(err)`, `server(msg)`, `drop(code)`. */
export class FakeRTC {
  static all = [];
  constructor(opts) {
    this.opts = opts;
    this.sent = [];
    this.connected = false;
    this.closed = false;
    this.mic = null;
    FakeRTC.all.push(this);
  }
  attachMicrophone(stream) {
    this.mic = stream;
  }
  connect() {
    return new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
  }
  send(message) {
    if (!this.connected) return false;
    this.sent.push(typeof message === "string" ? JSON.parse(message) : message);
    return true;
  }
  close() {
    this.closed = true;
    this.connected = false;
  }
  types() {
    return this.sent.map((m) => m.type);
  }
  // server side
  open() {
    this.connected = true;
    this.onopen?.();
    this._resolve();
  }
  fail(err) {
    this._reject(err);
  }
  server(msg) {
    this.onmessage?.(JSON.stringify(msg));
  }
  drop(code = 1006, reason = "connection lost") {
    this.connected = false;
    this.onclose?.({ code, reason, wasOpen: true, willRetry: false, delayMs: 0 });
  }
}

/** A MediaStream-like microphone with one track. */
export function fakeMic() {
  const track = { kind: "audio", enabled: true };
  return { track, getAudioTracks: () => [track], getTracks: () => [track] };
}

/** A WebSocket stand-in: `open()`, `drop()`, `server(msg)`; `FakeSocket.all` lists every one made. */
export class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(data) {
    this.sent.push(data);
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  server(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  types() {
    return this.sent.filter((d) => typeof d === "string").map((d) => JSON.parse(d).type);
  }
  binary() {
    return this.sent.filter((d) => typeof d !== "string");
  }
}
