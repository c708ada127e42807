/**
 * The connection layer of `VoiceClient`: the WebSocket (or custom) transport with its reconnects, the WebRTC
 * side of calls with `transport: "webrtc"` (lib/webrtc-call.js), which of them carries messages, the protocol
 * log and the history request. `VoiceClient` (voice-client.js) adds calls, audio and message handling on top.
 *
 * With `transport: "webrtc"` the WebSocket is the control connection: history, text outside a call, and
 * reconnects. A call first tries WebRTC; while its data channel is open every message goes over it, and the
 * socket only stands by (what arrives on it is ignored; its drops are not shown). If WebRTC cannot connect, the
 * call goes over the socket ("fallback"). If a live WebRTC connection is lost, it is re-established as soon as
 * the server is reachable (the socket is open), a few times per call, then the call stays on the socket.
 *
 * Hooks for the subclass: `_handleMessage(msg)`, `_onAudio(buffer)`, `_onConnectionLost()`,
 * `_callReady()`, `_micStream()`, `_endCallFromServer()`.
 *
 * @module connection
 */

import { createTransport } from "./transport.js";
import { socketUrl, messagesUrl, displayHost } from "./url.js";
import { VoiceState } from "./voice-state.js";
import { withDefaults } from "./options.js";
import { WebRTCCall, webrtcEndpoint } from "./webrtc-call.js";

export const PROTOCOL_VERSION = 1;
const LOG_LIMIT = 500;
/** Pause before re-establishing a lost WebRTC connection (a restarting server drops the socket meanwhile). */
export const RTC_RETRY_MS = 300;

/** Clients that are connected or connecting, for `window.__voiceStats()`. */
const liveClients = new Set();
if (!globalThis.__voiceStats) {
  /** Diagnostics for browser tests and the console: one stats object per live VoiceClient. */
  globalThis.__voiceStats = () => [...liveClients].map((c) => c.stats);
}

export class VoiceConnection extends VoiceState {
  #url;
  /** The WebSocket (or custom) transport. */
  #transport = null;
  /** @type {WebRTCCall | null} calls over WebRTC (`transport: "webrtc"`) */
  #rtc = null;
  #inUse = "websocket";
  #transportReason = null;
  #retryTimer = null;
  #everOpened = false;
  #historyGen = 0;
  #log = [];

  /** @param {import("./options.js").VoiceClientOptions} options */
  constructor(options) {
    super({ maxTranscriptMessages: options?.maxTranscriptMessages });
    /** Options with defaults. */
    this._o = withDefaults(options);
    this.#url = socketUrl(this._o);
    /** Totals for this client (the subclass adds its own counters to the same object). */
    this._stats = { opens: 0, samplesReceived: 0 };
    /** The server acknowledged our call on the current connection (audio_config or a non-idle status). */
    this._serverAck = false;
    if (this._o.transport === "webrtc") this.#rtc = this.#createRtc();
  }

  /** WebSocket URL in use. */
  get url() {
    return this.#url;
  }
  /** What carries the conversation now: "webrtc" while a call runs over WebRTC, else "websocket". */
  get transportInUse() {
    return this.#inUse;
  }
  /** Why the last switch to the WebSocket happened (e.g. a WebRTC fallback), or null. */
  get transportReason() {
    return this.#transportReason;
  }
  /** The open WebRTCTransport of the current call (`pc`, `audioElement`, `remoteStream`), or null. */
  get webrtc() {
    return this.#rtc?.transport ?? null;
  }
  /** Last JSON messages in and out (newest last; binary audio is counted in `stats`, not logged). */
  get protocolLog() {
    return this.#log;
  }
  /** @protected the WebRTC side, or null */
  get _rtc() {
    return this.#rtc;
  }
  /** @protected the data channel carries the messages now */
  get _rtcLive() {
    return !!this.#rtc?.live;
  }
  /** @protected connection counters for `stats` */
  get _connectionStats() {
    return {
      reconnects: Math.max(0, this._stats.opens - 1),
      transport: this.#inUse,
      webrtc: this.#rtc ? { ...this.#rtc.stats, disabled: this.#rtc.disabled?.reason ?? null } : null,
    };
  }

  // --- connection -----------------------------------------------------------------------------------

  /** Open the connection (reconnecting automatically until {@link VoiceConnection#disconnect}). */
  connect() {
    if (this.#transport) return;
    const transport = createTransport(this.#rtc ? "websocket" : this._o.transport, {
      url: this.#url,
      reconnect: this._o.reconnect,
      WebSocket: this._o.WebSocket,
    });
    transport.onopen = () => this.#onOpen();
    transport.onclose = (info) => this.#onClose(info || {});
    // While a call runs over WebRTC the socket only stands by: nothing on it is about the call.
    transport.onmessage = (data) => this._rtcLive || this.#onMessage(data);
    transport.onerror = () => {};
    this.#transport = transport;
    liveClients.add(this);
    this._setConnection("connecting");
    transport.connect();
  }

  /** Close the connection for good (the subclass ends any call first). */
  disconnect() {
    this._endRtc();
    this.#transport?.disconnect();
    this.#transport = null;
    liveClients.delete(this);
    this._setConnection("closed");
    this._clearError("connection");
  }

  #onOpen() {
    this.#everOpened = true;
    this._stats.opens += 1;
    if (this._rtcLive) {
      this.#transport.sendJSON({ type: "hello", protocol_version: PROTOCOL_VERSION });
      return;
    }
    this._serverAck = false;
    this._setConnection("open");
    this._clearError("connection");
    this._send({ type: "hello", protocol_version: PROTOCOL_VERSION });
    // A reconnect is a new server-side session: resume the call on it.
    this._startOnServer();
    if (this._o.loadHistory) this.refreshHistory();
  }

  #onClose(info) {
    if (this._rtcLive) return; // the call doesn't need the socket now; it reconnects by itself
    this.#lost();
    if (!this.#transport) return;
    this._setConnection(info.willRetry === false ? "closed" : "connecting");
    const host = displayHost(this.#url);
    this._setError(
      this.#everOpened
        ? "Connection to the voice server was lost. Reconnecting…"
        : `Can't reach the voice server at ${host}. Retrying…`,
      "connection",
    );
  }

  #lost() {
    this._serverAck = false;
    this._onConnectionLost();
    this._setInterim(null);
    this._setStatus("idle");
  }

  /**
   * @protected Ask the server to start (or resume) the call, once the microphone is ready: over WebRTC
   * when that is wanted, else `start_call` on the socket (if it isn't open, #onOpen does it later).
   */
  _startOnServer() {
    const rtc = this.#rtc;
    if (!this._callReady() || rtc?.busy || rtc?.live) return;
    if (rtc?.wantsCall()) rtc.attempt(this._micStream());
    else this._send({ type: "start_call" });
  }

  // --- WebRTC ---------------------------------------------------------------------------------------

  #createRtc() {
    const o = this._o;
    return new WebRTCCall(
      {
        endpoint: webrtcEndpoint(this.#url),
        offerFilter: o.offerFilter,
        iceServers: o.iceServers,
        timeoutMs: o.webrtcTimeoutMs,
        audioElement: o.audioElement,
        sinkId: o.outputDeviceId,
        playback: o.playback,
        fetch: o.fetch,
        RTCPeerConnection: o.RTCPeerConnection,
        createTransport: o.createWebRTCTransport,
      },
      {
        onOpen: () => this.#onRtcOpen(),
        onMessage: (data) => this.#onMessage(data),
        onFallback: (failure) => this.#onRtcFallback(failure),
        onClose: (info, outcome) => this.#onRtcClose(info, outcome),
        onAudioBlocked: (message) => this._setError(message, "output"),
      },
    );
  }

  #setTransport(transport, code, reason = null) {
    this.#inUse = transport;
    if (transport === "websocket") this.#transportReason = reason;
    this._emit("transportchange", { transport, code, reason });
  }

  /** The data channel opened: the call (re)starts on this new server-side session. */
  #onRtcOpen() {
    this._serverAck = false;
    this.#setTransport("webrtc", "connected");
    this._setConnection("open");
    this._clearError("connection");
    this._send({ type: "hello", protocol_version: PROTOCOL_VERSION });
    if (this._callReady()) this._send({ type: "start_call" });
  }

  /** WebRTC could not connect: the call goes over the socket (now, or when it (re)opens). */
  #onRtcFallback(failure) {
    this.#setTransport("websocket", failure.code, failure.reason);
    this._startOnServer();
  }

  /** A live WebRTC connection closed: the server ended the call, or the connection was lost. */
  #onRtcClose(info, outcome) {
    this.#lost();
    const why = info.reason || `WebRTC connection closed (${info.code})`;
    this.#setTransport("websocket", outcome === "ended" ? "call-ended" : "lost", why);
    if (outcome === "ended") {
      if (info.code === 1008) this._setError(`The server ended the call: ${why}`, "server");
      this._endCallFromServer();
      return;
    }
    // Re-establish once the server is known to be reachable: the socket is still open after a short pause
    // (a restarting server closes it meanwhile), or it reconnects (#onOpen).
    this._setConnection(this.#transport ? "connecting" : "closed");
    this._setError("Connection to the voice server was lost. Reconnecting…", "connection");
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (!this.#transport?.connected) return;
      this._setConnection("open");
      this._clearError("connection");
      this._startOnServer();
    }, RTC_RETRY_MS);
  }

  /** @protected The call ended: close its WebRTC side; the socket is the connection again. */
  _endRtc() {
    if (!this.#rtc) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#rtc.endCall();
    if (this.#inUse === "webrtc") this.#setTransport("websocket", "call-ended");
    if (!this.#transport) return;
    this._setConnection(this.#transport.connected ? "open" : "connecting");
    if (this.#transport.connected) this._clearError("connection");
  }

  // --- sending and receiving ------------------------------------------------------------------------

  /** @protected Send a JSON message over the data channel during a WebRTC call, else the socket. */
  _send(message) {
    const wire = this._rtcLive ? this.#rtc : this.#transport;
    if (!wire?.connected) return false;
    const ok = wire.sendJSON(message) !== false;
    if (ok) this.#logMessage("out", message);
    return ok;
  }

  /** @protected Send microphone audio, only when the call runs over the socket (WebRTC has a track). */
  _sendAudio(pcm) {
    if (this.#rtc?.live || this.#rtc?.busy) return false;
    return !!this.#transport?.sendBinary(pcm);
  }

  /**
   * Send the app's own JSON message: a `type` the protocol doesn't define reaches the agent's
   * `on_message(message, call)` (answers come back as `custommessage` events). Same name as in Cloudflare's client.
   * @param {{type: string, [key: string]: any}} message
   * @returns {boolean} whether it was sent (false when not connected)
   */
  sendJSON(message) {
    return this._send(message);
  }

  /**
   * Send a typed message; works in and out of a call (out of a call the reply is text only).
   * @param {string} text
   * @returns {boolean} whether it was sent
   */
  sendText(text) {
    const trimmed = String(text ?? "").trim();
    if (!trimmed) return false;
    if (!this._send({ type: "text_message", text: trimmed })) {
      this._setError("Not connected to the voice server; the message was not sent.", "send");
      return false;
    }
    this._clearError("send");
    return true;
  }

  #onMessage(data) {
    if (typeof data === "string") {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
      if (msg && typeof msg === "object") {
        this.#logMessage("in", msg);
        this._handleMessage(msg);
      }
    } else if (data instanceof ArrayBuffer) {
      this._onAudio(data);
    } else if (ArrayBuffer.isView(data)) {
      this._onAudio(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    }
  }

  #logMessage(dir, message) {
    this.#log.push({ dir, at: Date.now(), message });
    if (this.#log.length > LOG_LIMIT) this.#log.splice(0, this.#log.length - LOG_LIMIT);
  }

  /**
   * Reload the conversation from `GET .../messages`, replacing the local list. Done automatically on every
   * (re)connect; failures are ignored (history is a nicety, not a requirement).
   */
  async refreshHistory() {
    const doFetch = this._o.fetch ?? globalThis.fetch;
    if (!doFetch) return;
    const gen = ++this.#historyGen;
    const token = this._store.beginSync();
    try {
      const res = await doFetch(messagesUrl(this.#url), { headers: { accept: "application/json" } });
      if (!res.ok) return;
      const body = await res.json();
      if (gen !== this.#historyGen || !Array.isArray(body?.messages)) return;
      this._store.applyHistory(body.messages, token);
      this._emitTranscript();
      this._emit("historyload", { count: body.messages.length });
    } catch {
      /* unreachable or not implemented: keep the local transcript */
    }
  }

  // --- hooks for the subclass -----------------------------------------------------------------------

  /** @protected a parsed server message */
  _handleMessage(_msg) {}
  /** @protected binary agent audio (WebSocket only) */
  _onAudio(_buffer) {}
  /** @protected the connection carrying the call went away: its audio stream is dead */
  _onConnectionLost() {}
  /** @protected whether a call wants to run on the server now (in a call, microphone open) */
  _callReady() {
    return false;
  }
  /** @protected the microphone's MediaStream, for WebRTC */
  _micStream() {
    return null;
  }
  /** @protected the server ended the call (WebRTC close 1000/1008) */
  _endCallFromServer() {}
}
