/**
 * How protocol messages and audio travel. `VoiceClient` only talks to the small interface below (the
 * WebRTC transport, lib/webrtc-transport.js, implements it too; `transport: "webrtc"` is handled by
 * lib/connection.js, which keeps a WebSocket from here as the control connection).
 *
 * Transport interface:
 * - `connect()`, `disconnect()`, `sendJSON(obj)`, `sendBinary(arrayBuffer)`, `connected` (boolean);
 * - callbacks set by the client: `onopen()`, `onclose(info)`, `onmessage(data: string | ArrayBuffer)`,
 *   `onerror(event)`. `info` is `{code, reason, wasOpen, willRetry, delayMs}`.
 * A transport that reconnects by itself calls `onopen` again for every new connection.
 *
 * @module transport
 */

import { Backoff } from "./backoff.js";

/** A connection that stayed up this long counts as healthy: the next drop starts from the shortest delay. */
const STABLE_MS = 5000;

/**
 * @typedef {object} WebSocketTransportOptions
 * @property {string} url
 * @property {import("./backoff.js").BackoffOptions} [reconnect] backoff tuning
 * @property {boolean} [autoReconnect=true]
 * @property {typeof WebSocket} [WebSocket] implementation (default: the global one; injectable for tests)
 * @property {{setTimeout: typeof setTimeout, clearTimeout: typeof clearTimeout, now: () => number}} [timers]
 */

/** A WebSocket that reconnects with capped, jittered exponential backoff until told to stop. */
export class WebSocketTransport {
  /** @param {WebSocketTransportOptions} options */
  constructor({ url, reconnect, autoReconnect = true, WebSocket: Impl, timers } = {}) {
    this.url = url;
    this.autoReconnect = autoReconnect;
    this.backoff = new Backoff(reconnect);
    this._Impl = Impl || globalThis.WebSocket;
    this._timers = timers || {
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (id) => clearTimeout(id),
      now: () => Date.now(),
    };
    /** @type {WebSocket | null} */
    this._ws = null;
    this._timer = null;
    this._stopped = true;
    this._openedAt = 0;
    /** Successful opens so far (the first connect included). */
    this.opens = 0;
    this.onopen = null;
    this.onclose = null;
    this.onmessage = null;
    this.onerror = null;
    this._onOnline = () => {
      // The network came back: don't sit out the rest of a long backoff delay.
      if (this._timer !== null && !this._stopped) {
        this._timers.clearTimeout(this._timer);
        this._timer = null;
        this._open();
      }
    };
  }

  get connected() {
    return !!this._ws && this._ws.readyState === 1;
  }

  connect() {
    if (!this._stopped) return;
    if (!this._Impl) throw new Error("WebSocket is not available in this environment");
    this._stopped = false;
    globalThis.addEventListener?.("online", this._onOnline);
    this._open();
  }

  disconnect() {
    this._stopped = true;
    globalThis.removeEventListener?.("online", this._onOnline);
    if (this._timer !== null) this._timers.clearTimeout(this._timer);
    this._timer = null;
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close(1000, "client disconnect");
      } catch {
        /* already closing */
      }
    }
  }

  /** @param {object} data */
  sendJSON(data) {
    if (!this.connected) return false;
    this._ws.send(JSON.stringify(data));
    return true;
  }

  /** @param {ArrayBuffer | ArrayBufferView} data */
  sendBinary(data) {
    if (!this.connected) return false;
    this._ws.send(data);
    return true;
  }

  _open() {
    const ws = new this._Impl(this.url);
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    let wasOpen = false;
    ws.onopen = () => {
      wasOpen = true;
      this.opens += 1;
      this._openedAt = this._timers.now();
      this.onopen?.();
    };
    ws.onmessage = (event) => this.onmessage?.(event.data);
    ws.onerror = (event) => this.onerror?.(event);
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._ws = null;
      if (wasOpen && this._timers.now() - this._openedAt >= STABLE_MS) this.backoff.reset();
      const willRetry = this.autoReconnect && !this._stopped;
      const delayMs = willRetry ? this.backoff.next() : 0;
      if (willRetry) {
        this._timer = this._timers.setTimeout(() => {
          this._timer = null;
          if (!this._stopped) this._open();
        }, delayMs);
      } else {
        this._stopped = true;
      }
      this.onclose?.({ code: event?.code, reason: event?.reason, wasOpen, willRetry, delayMs });
    };
  }
}

/**
 * Build the connection's transport from the `transport` option: `"websocket"` (default) or a ready-made
 * object implementing the interface above (custom transports, tests). `"webrtc"` is not built here: in that
 * mode VoiceClient asks for a `"websocket"` control connection and sets up WebRTC per call.
 * @param {string | object | undefined} kind
 * @param {WebSocketTransportOptions} options
 */
export function createTransport(kind, options) {
  if (kind && typeof kind === "object") return kind;
  switch (kind ?? "websocket") {
    case "websocket":
      return new WebSocketTransport(options);
    case "webrtc":
      throw new Error('"webrtc" is a VoiceClient mode (it keeps a "websocket" control connection); create a VoiceClient with transport: "webrtc"');
    default:
      throw new Error(`Unknown transport "${kind}"`);
  }
}
